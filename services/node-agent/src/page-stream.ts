// A migration's CPU memory on its way while CRIU still dumps it. CRIU appends a process's pages to
// criu/pages-N.img in one sequential pass; bytes below the file's current size are final. The streamer
// watches the image folder during `criu dump` and sends each file's completed pieces to the target as
// they appear, so the cutover ships only the tail and the small files after CRIU ends, instead of the
// whole CPU image (0.6 GB for a counter on an H200, 1.45 GB for PyTorch: the driver's residue and the
// host heap) after it.
//
// The target learns such a file up front as `growing`, with an upper bound for its size (a sparse file
// it maps as the destination), and its final size once the streamer finished; see MigrationsIn.files.
import { closeSync, fstatSync, openSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../../common/src/index.ts';
import * as pccl from '../../../native/pccl/pccl.ts';
import { PhosError } from '../../../proto/src/index.ts';
import { childrenOf, statusBytes } from './proc.ts';

/** A file piece per transport item: small, so the stream trails CRIU's writes closely. */
const PIECE = 8 << 20;
const POLL_MS = 5;
const PAGES = /^pages-\d+\.img$/;

export interface OfferedFile { name: string; size: number; alloc: number; growing?: boolean }

export interface PageStreamDeps {
  /** Offers files to the target (migrate-files); resolves with the allocs it wants. */
  offer(files: OfferedFile[]): Promise<number[]>;
  /** Sends pieces of a mapped file (region id from pccl.mapFd) and resolves once the target verified them. */
  send(items: pccl.TransportItem[]): Promise<void>;
}

interface Streamed { name: string; fd: number; alloc: number; sent: number; wanted: boolean }

export class PageStreamer {
  private readonly files = new Map<string, Streamed>();
  private loop: Promise<void> | null = null;
  private stopped = false;
  private nextAlloc: number;
  bytes = 0;

  /**
   * @param dir the CRIU image folder being written
   * @param cap upper bound of any pages file (the frozen process tree's resident plus swapped memory)
   * @param allocBase first transport alloc id for streamed files (clear of the caller's other files)
   */
  constructor(private readonly dir: string, private readonly cap: number, allocBase: number, private readonly d: PageStreamDeps, private readonly log: Logger) {
    this.nextAlloc = allocBase;
  }

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        await this.pass(false);
        await new Promise((res) => setTimeout(res, POLL_MS));
      }
    })();
    this.loop.catch(() => undefined); // finish() reports it
  }

  /**
   * CRIU has ended: sends every file's tail, tells the target the final sizes, and returns the names
   * (criu/pages-N.img) it shipped, which the caller must not send again.
   */
  async finish(): Promise<Set<string>> {
    this.stopped = true;
    try {
      await this.loop;
      const duringDump = this.bytes;
      await this.pass(true);
      const final = [...this.files.values()].filter((f) => f.wanted).map((f) => ({ name: `criu/${f.name}`, size: fstatSync(f.fd).size, alloc: f.alloc }));
      if (final.length) await this.d.offer(final);
      this.log.info({ files: final.length, bytes: this.bytes, duringDump }, 'criu pages streamed during the dump');
      return new Set([...this.files.values()].map((f) => `criu/${f.name}`));
    } finally {
      this.close();
    }
  }

  /** The dump failed or the migration was cancelled: stop, close, forget. */
  async abort(): Promise<void> {
    this.stopped = true;
    await this.loop?.catch(() => undefined);
    this.close();
  }

  private close(): void {
    for (const f of this.files.values()) { try { closeSync(f.fd); } catch { /* closed */ } }
  }

  /** Offers new pages files, then sends what each grew by: whole pieces while CRIU writes, all of it at the end. */
  private async pass(last: boolean): Promise<void> {
    const fresh: Streamed[] = [];
    for (const name of readdirSync(this.dir)) {
      if (!PAGES.test(name) || this.files.has(name)) continue;
      const f: Streamed = { name, fd: openSync(join(this.dir, name), 'r'), alloc: this.nextAlloc++, sent: 0, wanted: false };
      this.files.set(name, f);
      fresh.push(f);
    }
    if (fresh.length) {
      const wanted = new Set(await this.d.offer(fresh.map((f) => ({ name: `criu/${f.name}`, size: this.cap, alloc: f.alloc, growing: true }))));
      for (const f of fresh) f.wanted = wanted.has(f.alloc);
    }
    for (const f of this.files.values()) if (f.wanted) await this.sendGrown(f, last);
  }

  private async sendGrown(f: Streamed, last: boolean): Promise<void> {
    const size = fstatSync(f.fd).size;
    if (size > this.cap) {
      throw new PhosError('ILLEGAL_STATE', `criu wrote ${size} B to ${f.name}, more than the ${this.cap} B the process held; the cutover is abandoned`);
    }
    const end = last ? size : Math.floor(size / PIECE) * PIECE;
    if (end <= f.sent) return;
    const map = pccl.mapFd(f.fd, end, false);
    try {
      await this.d.send(filePieces(map, f.alloc, f.sent, end, PIECE));
    } finally {
      pccl.unmap(map);
    }
    this.bytes += end - f.sent;
    f.sent = end;
  }
}

/** Transport items for bytes [from, to) of a mapped file (`map`, from pccl.mapFd), `piece` bytes each. */
export function filePieces(map: number, alloc: number, from: number, to: number, piece: number): pccl.TransportItem[] {
  const items: pccl.TransportItem[] = [];
  for (let off = from; off < to; off += piece) items.push({ src: map, offset: off, length: Math.min(piece, to - off), alloc, chunkOffset: off });
  return items;
}

/** Resident plus swapped bytes of pid and its descendants: no pages file CRIU writes for them is larger. */
export function treeMemoryBytes(pid: number): number {
  let total = 0;
  const seen = new Set<number>();
  const visit = (p: number) => {
    if (seen.has(p)) return;
    seen.add(p);
    total += (statusBytes(p, 'VmRSS') ?? 0) + (statusBytes(p, 'VmSwap') ?? 0);
    for (const c of childrenOf(p)) visit(c);
  };
  visit(pid);
  return total;
}
