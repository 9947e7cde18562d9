// The source side of a live migration. Pre-copy: while the app runs, every 2 MiB chunk of its kept device
// memory goes to the target over the pccl transport, then rounds re-hash the chunks (pccl hashChunks) and
// send only those whose hash changed, until what is left fits the downtime budget or stops shrinking.
// Cutover: a keeper-path dump (checkpoint.ts) whose GPU step, instead of writing files, sends the chunks
// that changed since their last shipment plus the CRIU image and the app's log; the app ends, the kept
// memory and the local CRIU image stay until the coordinator commits (released) or aborts (the app is
// restored here from them, under its pid).
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../../common/src/index.ts';
import * as pccl from '../../../native/pccl/pccl.ts';
import { PROTO_VERSION, PhosError, subjects, type Manifest, type Message } from '../../../proto/src/index.ts';
import { checkpointProcess, type CheckpointDeps, type Reporter } from './checkpoint.ts';
import type { ImageDir } from './image.ts';
import type { KeptAllocation } from './keeper.ts';
import { LIBPHOS_CHUNK, changedChunks } from './libphos-link.ts';
import type { MeshMember } from './mesh.ts';
import { PageStreamer, filePieces, treeMemoryBytes, type OfferedFile } from './page-stream.ts';
import { restoreImage } from './restore.ts';

/** Transport alloc ids from here up carry files, below it device allocations (libphos ids are small). */
export const FILE_ALLOC_BASE = 0x80000000;
/** Pre-copy gives up converging after this many rounds. */
const MAX_ROUNDS = 12;
/** Share of the downtime budget the final round's bytes may take (the rest: freeze, CRIU, restore). */
const DATA_SHARE = 0.5;
/** Chunks per transportSend call: progress and cancel are looked at between batches. */
const SEND_BATCH = 32;
/** CRIU files go out in pieces of this size (spread over the streams; a send item holds at most 1 GiB). */
const FILE_PIECE = 64 << 20;
/** Alloc ids of CRIU pages files streamed during the dump start here (above filesOf's). */
const STREAM_ALLOC_BASE = FILE_ALLOC_BASE + 0x1000000;
/** Post-copy sends at most this many chunks at once: a chunk the app asks for waits behind one batch. */
const POSTCOPY_BATCH = 4;
/** Under a bandwidth cap a batch carries about this long of data, so progress and cancel stay prompt. */
const BATCH_SECONDS = 0.5;

interface Outgoing {
  id: string;
  pid: number;
  to: string;
  sender: pccl.TransportSender;
  /** chunk key "alloc:index" -> hash the target verified. */
  shipped: Map<string, string>;
  announced: Set<number>;
  abort: AbortController;
  phase: 'pre-copy' | 'cutover' | 'dumped' | 'ended';
  dir: string;
  bytesSent: number;
  /** Measured send rate, bytes/ms (0 until the first batch). */
  rate: number;
  /** Chunks per transportSend. */
  batch: number;
  /** libphos answered the last hash-round: its freeze reply can name the chunks written since. */
  marked?: boolean;
  vaBase?: number | null;
  /** Chunk indices (libphos's, over its VA region) written since the last round began; null: unknown. */
  atFreeze?: Set<number> | null;
  /**
   * Chunks ("alloc:index") the last round found changed but did not send (it ended there: converged,
   * stalled, or post-copy). They were written before that round began, so the freeze reply does not
   * name them: the cutover must re-hash them anyway.
   */
  leftDirty: Set<string>;
  mode: Message<'precopy-request'>['mode'];
  converged?: boolean;
  /** Post-copy: slab chunks left for after the target runs the app, and their hashes at the freeze. */
  postcopy: ChunkRef[];
  frozenHash: Map<string, string>;
  /** Post-copy chunks ("alloc:index") the app waits for on the target, in the order asked; sent first. */
  demand: string[];
  stopDemand?: () => void;
  /** The cutover's CRIU pages, on their way while CRIU writes them. */
  pages?: PageStreamer | null;
  /** The cutover's final GPU round, begun when CRIU starts (see finalRound). */
  final?: Promise<{ all: ChunkRef[]; bytes: number }>;
}

const noReport: Reporter = { phase: () => {}, step: () => {} };
const key = (alloc: number, index: number) => `${alloc}:${index}`;

export interface MigrateOutDeps extends CheckpointDeps {
  mesh: () => MeshMember;
  /** pids under an exclusive operation (a checkpoint or migration); shared with the agent. */
  busy: Set<number>;
}

interface ChunkRef { alloc: KeptAllocation; index: number; offset: number; length: number }

export class MigrationsOut {
  private readonly active = new Map<string, Outgoing>();

  constructor(private readonly d: MigrateOutDeps, private readonly log: Logger) {}

  private get(id: string): Outgoing {
    const m = this.active.get(id);
    if (!m) throw new PhosError('NOT_FOUND', `no outgoing migration ${id} on this node`);
    return m;
  }

  private chunksOf(allocs: KeptAllocation[]): ChunkRef[] {
    const size = this.d.o.chunkSize;
    const out: ChunkRef[] = [];
    for (const a of allocs) {
      for (let i = 0, off = 0; off < a.size; i++, off += size) out.push({ alloc: a, index: i, offset: off, length: Math.min(size, a.size - off) });
    }
    return out;
  }

  /** Tells the target about allocations it has not heard of (it reserves memory for each). */
  private async announce(m: Outgoing, allocs: KeptAllocation[]): Promise<void> {
    const fresh = allocs.filter((a) => !m.announced.has(a.id));
    if (!fresh.length) return;
    await this.d.mesh().request(m.to, 'migrate-allocs', 'migrate-allocs', {
      v: PROTO_VERSION, id: m.id, allocations: fresh.map((a) => ({ id: a.id, va: a.va, size: a.size, kind: a.kind, device: a.device ?? 0 })),
    }, 60_000);
    for (const a of fresh) m.announced.add(a.id);
  }

  /** Chunks whose bytes differ from what the target holds (all of them the first time). */
  private async dirty(m: Outgoing, chunks: ChunkRef[]): Promise<ChunkRef[]> {
    const out: ChunkRef[] = [];
    for (const a of new Set(chunks.map((c) => c.alloc))) {
      const mine = chunks.filter((c) => c.alloc === a);
      const unknown = mine.filter((c) => !m.shipped.has(key(a.id, c.index)));
      const known = mine.filter((c) => m.shipped.has(key(a.id, c.index)));
      out.push(...unknown);
      if (!known.length) continue;
      this.d.keeper.hold([a.region]);
      let r: { hashes: string[] };
      try {
        if (!this.d.keeper.allocations(m.pid).some((x) => x.region === a.region)) continue;
        r = await pccl.hashChunks({ src: a.region, items: known.map((c) => ({ offset: c.offset, length: c.length })) });
      } finally {
        await this.d.keeper.unhold([a.region]);
      }
      known.forEach((c, i) => { if (r.hashes[i] !== m.shipped.get(key(a.id, c.index))) out.push(c); });
    }
    return out;
  }

  /** Sends chunks in batches, remembering what the target verified; stops at an abort. */
  private async send(m: Outgoing, chunks: ChunkRef[], onBatch: (sent: number) => void): Promise<number> {
    let sent = 0;
    for (let i = 0; i < chunks.length; i += m.batch) {
      if (m.abort.signal.aborted) throw new PhosError('CANCELLED', `migration ${m.id} was aborted`);
      const rec = this.d.registry.find(String(m.pid));
      if (rec.machine.terminal && m.phase === 'pre-copy') throw new PhosError('ILLEGAL_STATE', `pid ${m.pid} ended (${rec.machine.state}) during the migration; nothing to move`);
      // The app may free an allocation while it runs (pre-copy): send only what the keeper still holds,
      // and hold it for the send. A freed allocation is simply not part of the app any more.
      const live = new Set(this.d.keeper.allocations(m.pid).map((a) => a.region));
      const part = chunks.slice(i, i + m.batch).filter((c) => live.has(c.alloc.region));
      if (!part.length) continue;
      const regions = [...new Set(part.map((c) => c.alloc.region))];
      this.d.keeper.hold(regions);
      let r: pccl.TransportSendResult;
      try {
        r = await pccl.transportSend(m.sender.id, part.map((c) => ({ src: c.alloc.region, offset: c.offset, length: c.length, alloc: c.alloc.id, chunkOffset: c.offset })));
      } finally {
        await this.d.keeper.unhold(regions);
      }
      part.forEach((c, k) => m.shipped.set(key(c.alloc.id, c.index), r.hashes[k]!));
      if (r.ms > 0) m.rate = m.rate === 0 ? r.bytes / r.ms : 0.7 * m.rate + 0.3 * (r.bytes / r.ms);
      sent += r.bytes;
      m.bytesSent += r.bytes;
      onBatch(sent);
    }
    return sent;
  }

  private progress(m: Outgoing, round: number, remaining: number, dirtyRate: number): void {
    this.d.mesh().publish(subjects.migrationProgress(m.id), 'migration-progress', {
      v: PROTO_VERSION, id: m.id, round, bytesTotal: this.d.keeper.bytes(m.pid), bytesSent: m.bytesSent, bytesRemaining: Math.max(0, remaining), dirtyBytesPerSec: dirtyRate,
    });
  }

  /** Pre-copy rounds while the app runs; resolves when they converged or ran out. */
  async precopy(req: Message<'precopy-request'>): Promise<Message<'precopy-result'>> {
    const rec = this.d.registry.managed(req.pid);
    if (rec.machine.state !== 'running') throw new PhosError('ILLEGAL_STATE', `pid ${req.pid} is ${rec.machine.state}; a migration needs it running`);
    if (this.d.busy.has(req.pid)) throw new PhosError('ILLEGAL_STATE', `pid ${req.pid} is already being checkpointed or migrated`, { remedy: 'wait for the running operation to finish' });
    if (!this.d.link.linked(req.pid) || this.d.keeper.allocations(req.pid).length === 0) {
      throw new PhosError('ILLEGAL_STATE', `pid ${req.pid} cannot be migrated live: libphos is not connected or holds no device memory`, { remedy: 'start it with phos run (libphos preloaded)' });
    }
    this.d.busy.add(req.pid);
    const log = this.log.child({ migrationId: req.id, pid: req.pid });
    let m: Outgoing | undefined;
    try {
      const sender = await pccl.transportConnect({ host: req.host, port: req.port, streams: req.streams, bandwidthBytesPerSec: req.bandwidthBytesPerSec });
      m = { id: req.id, pid: req.pid, to: req.to, sender, shipped: new Map(), announced: new Set(), abort: new AbortController(), phase: 'pre-copy', dir: join(this.d.o.stateDir, 'migrations', req.id), bytesSent: 0, rate: 0,
        mode: req.mode, postcopy: [], frozenHash: new Map(), demand: [], leftDirty: new Set(),
        batch: req.bandwidthBytesPerSec ? Math.max(1, Math.min(SEND_BATCH, Math.floor((req.bandwidthBytesPerSec * BATCH_SECONDS) / this.d.o.chunkSize))) : SEND_BATCH };
      this.active.set(req.id, m);
      return await this.rounds(m, req, log);
    } catch (err) {
      this.d.busy.delete(req.pid);
      if (m) { this.active.delete(req.id); await pccl.transportClose(m.sender.id).catch(() => undefined); }
      throw err;
    }
  }

  private async rounds(m: Outgoing, req: Message<'precopy-request'>, log: Logger): Promise<Message<'precopy-result'>> {
    let prev = Infinity, stalls = 0, round = 0, dirtyBytes = 0, converged = false;
    let lastScan = performance.now();
    for (;;) {
      round++;
      // libphos notes every chunk written from here on; the freeze reply names them (see ship()).
      await this.markRound(m);
      const allocs = this.d.keeper.allocations(m.pid);
      await this.announce(m, allocs);
      const chunks = await this.dirty(m, this.chunksOf(allocs));
      m.leftDirty = new Set(chunks.map((c) => key(c.alloc.id, c.index))); // until this round sends them
      const scanAt = performance.now();
      dirtyBytes = chunks.reduce((s, c) => s + c.length, 0);
      const dirtyRate = round === 1 ? 0 : dirtyBytes / Math.max((scanAt - lastScan) / 1000, 1e-3);
      lastScan = scanAt;
      // Converged: what is dirty now would go out within its share of the downtime budget.
      const budget = m.rate * req.maxDowntimeMs * DATA_SHARE;
      if (round > 1 && (dirtyBytes === 0 || dirtyBytes <= budget)) { converged = true; break; }
      // --mode postcopy: one bulk round while the app runs; what it dirties follows after the target runs it.
      if (round > 1 && req.mode === 'postcopy') break;
      if (round > 1) {
        stalls = dirtyBytes >= prev * 0.9 ? stalls + 1 : 0;
        if (stalls >= 2 || round > MAX_ROUNDS) break;
      }
      prev = dirtyBytes;
      log.info({ round, chunks: chunks.length, bytes: dirtyBytes, dirtyBytesPerSec: Math.round(dirtyRate) }, 'pre-copy round');
      this.progress(m, round, dirtyBytes, dirtyRate);
      await this.send(m, chunks, (sent) => this.progress(m, round, dirtyBytes - sent, dirtyRate));
      m.leftDirty.clear();
    }
    this.progress(m, round, dirtyBytes, 0);
    m.converged = converged;
    log.info({ rounds: round, bytesSent: m.bytesSent, dirtyBytes, converged }, 'pre-copy done');
    return { v: PROTO_VERSION, rounds: round, bytesSent: m.bytesSent, dirtyBytes, converged };
  }

  /** Offers files to the target; resolves with the allocs it wants (one it holds already is skipped). */
  private async offerFiles(m: Outgoing, files: OfferedFile[]): Promise<number[]> {
    const r = (await this.d.mesh().request(m.to, 'migrate-files', 'migrate-files', {
      v: PROTO_VERSION, id: m.id, files: files.map(({ name, size, alloc, growing }) => ({ name, size, alloc, ...(growing ? { growing } : {}) })),
    }, 30_000)) as Message<'files-wanted'>;
    return r.allocs;
  }

  /** CRIU starts the cutover dump: its pages files go to the target while it writes them (page-stream.ts). */
  private streamPages(m: Outgoing, dir: string): void {
    const cap = treeMemoryBytes(m.pid) + (64 << 20);
    m.pages = new PageStreamer(dir, cap, STREAM_ALLOC_BASE, {
      offer: (files) => this.offerFiles(m, files),
      send: async (items) => { await pccl.transportSend(m.sender.id, items); m.bytesSent += items.reduce((s, i) => s + i.length, 0); },
    }, this.log.child({ migrationId: m.id, pid: m.pid }));
    m.pages.start();
  }

  /** Files the target needs to restore: every CRIU file, and the app's log (it keeps appending to it). */
  private filesOf(img: ImageDir, logPath: string): { name: string; path: string; size: number; alloc: number }[] {
    const out = readdirSync(img.criuDir).map((f) => ({ name: `criu/${f}`, path: join(img.criuDir, f) }));
    if (existsSync(logPath)) out.push({ name: logPath, path: logPath });
    return out.map((f, i) => {
      const fd = openSync(f.path, 'r');
      try { return { ...f, size: fstatSync(fd).size, alloc: FILE_ALLOC_BASE + i }; } finally { closeSync(fd); }
    });
  }

  /** Sends the files the target asked for, straight from read-only mappings. */
  private async sendFiles(m: Outgoing, files: { path: string; size: number; alloc: number }[]): Promise<void> {
    for (const f of files) {
      if (f.size === 0) continue;
      const fd = openSync(f.path, 'r');
      let map = -1;
      try {
        map = pccl.mapFd(fd, f.size, false);
        // Pieces: a send item holds at most 1 GiB, and several pieces spread over the parallel streams.
        await pccl.transportSend(m.sender.id, filePieces(map, f.alloc, 0, f.size, FILE_PIECE));
        m.bytesSent += f.size;
      } finally {
        if (map >= 0) pccl.unmap(map);
        closeSync(fd);
      }
    }
  }

  /** Starts a libphos hash round (its write tracking restarts); remembers whether libphos can name changes. */
  private async markRound(m: Outgoing): Promise<void> {
    m.vaBase = this.d.link.hello(m.pid)?.vaBase ?? null;
    try { await this.d.link.request(m.pid, 'hash-round'); m.marked = true; } catch { m.marked = false; }
  }

  /**
   * Chunks whose target copy may be stale at the freeze: never shipped, found changed by the last round
   * but not sent, written since the last round began (libphos's freeze reply), or in the app's own VMM
   * mappings. Only these are re-hashed in the downtime; without that reply (older libphos, another chunk
   * size) every shipped chunk is re-hashed.
   */
  private suspects(m: Outgoing, all: ChunkRef[]): ChunkRef[] {
    const changed = m.atFreeze;
    if (!m.marked || !changed || m.vaBase == null || this.d.o.chunkSize !== LIBPHOS_CHUNK) return all;
    const base = m.vaBase;
    // libphos numbers chunks of its own slabs; the app's own VMM mappings lie outside that region.
    return all.filter((c) => c.alloc.kind !== 'slab' || !m.shipped.has(key(c.alloc.id, c.index)) || m.leftDirty.has(key(c.alloc.id, c.index))
      || changed.has(Math.floor((c.alloc.va - base) / LIBPHOS_CHUNK) + c.index));
  }

  /** Hashes of chunks as the kept memory holds them now (the app is frozen). */
  private async hashOf(chunks: ChunkRef[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const a of new Set(chunks.map((c) => c.alloc))) {
      const mine = chunks.filter((c) => c.alloc === a);
      this.d.keeper.hold([a.region]);
      try {
        const r = await pccl.hashChunks({ src: a.region, items: mine.map((c) => ({ offset: c.offset, length: c.length })) });
        mine.forEach((c, i) => out.set(key(a.id, c.index), r.hashes[i]!));
      } finally {
        await this.d.keeper.unhold([a.region]);
      }
    }
    return out;
  }

  /** Post-copy: sends the chunks the cutover left out, from the kept memory (the app runs on the target). */
  async postcopySend(id: string): Promise<Message<'postcopy-result'>> {
    const m = this.get(id);
    if (m.phase !== 'dumped') throw new PhosError('ILLEGAL_STATE', `migration ${id} is in ${m.phase}; post-copy follows the cutover`);
    const t0 = performance.now();
    const left = new Map(m.postcopy.map((c) => [key(c.alloc.id, c.index), c]));
    let bytes = 0;
    let demanded = 0;
    try {
      while (left.size) {
        // What the app waits for first (asked since the last batch), then the rest in order.
        const batch: ChunkRef[] = [];
        for (const k of m.demand.splice(0)) {
          const c = left.get(k);
          if (c && left.delete(k)) { batch.push(c); demanded++; }
        }
        for (const [k, c] of left) {
          if (batch.length >= POSTCOPY_BATCH) break;
          left.delete(k);
          batch.push(c);
        }
        bytes += await this.send(m, batch, () => {});
      }
    } finally {
      m.stopDemand?.();
    }
    this.log.info({ migrationId: id, pid: m.pid, chunks: m.postcopy.length, demanded, bytes, ms: Math.round(performance.now() - t0) }, 'post-copy sent');
    return { v: PROTO_VERSION, chunks: m.postcopy.length, bytes, ms: performance.now() - t0, demanded };
  }

  /**
   * The GPU side of the cutover, on the frozen app's kept memory: chunks that may have changed since
   * they were shipped are re-hashed, and the changed ones sent now, or left for the post-copy. It starts
   * when CRIU starts (the driver checkpoint is done; the kept memory no longer changes), so it overlaps
   * the CRIU dump. Resolves with every chunk and the bytes it sent.
   */
  private async finalRound(m: Outgoing, allocs: KeptAllocation[]): Promise<{ all: ChunkRef[]; bytes: number }> {
    await this.announce(m, allocs);
    const all = this.chunksOf(allocs);
    const suspects = this.suspects(m, all);
    const final = await this.dirty(m, suspects);
    // Post-copy (asked for, or auto when the rounds stopped converging): slab chunks go after the target
    // runs the app, behind libphos's gate there; the app's own VMM mappings cannot be gated, so go now.
    const gated = this.d.o.chunkSize === LIBPHOS_CHUNK; // the gate works in libphos's chunks
    const post = gated && (m.mode === 'postcopy' || (m.mode === 'auto' && m.converged === false)) ? final.filter((c) => c.alloc.kind === 'slab') : [];
    const later = new Set(post);
    const now = final.filter((c) => !later.has(c));
    this.log.info({ migrationId: m.id, pid: m.pid, chunks: all.length, leftDirty: m.leftDirty.size, rehashed: suspects.length, sent: now.length, postcopy: post.length }, 'cutover: final round');
    const bytes = await this.send(m, now, () => {});
    m.postcopy = post;
    m.frozenHash = await this.hashOf(post);
    // Listen before the target can run the app: its first waits at the gate come right after the restore.
    if (post.length) m.stopDemand = this.d.mesh().subscribe(subjects.migrationDemand(m.id), 'postcopy-demand', (d) => m.demand.push(...d.chunks.map((c) => key(c.alloc, Math.floor(c.offset / this.d.o.chunkSize)))));
    return { all, bytes };
  }

  /** The ship step of the cutover dump: the final GPU round (begun with CRIU), then the CPU image; returns the manifest's chunks. */
  private ship(m: Outgoing, logPath: string, sent: { bytes: number }) {
    return async (allocs: KeptAllocation[], img: ImageDir): Promise<Manifest['chunks']> => {
      const { all, bytes } = await (m.final ?? this.finalRound(m, allocs));
      sent.bytes = bytes;
      const streamed = (await m.pages?.finish()) ?? new Set<string>();
      const files = this.filesOf(img, logPath).filter((f) => !streamed.has(f.name));
      const wanted = await this.offerFiles(m, files);
      await this.sendFiles(m, files.filter((f) => wanted.includes(f.alloc)));
      return all.map((c) => { const k = key(c.alloc.id, c.index); return { alloc: c.alloc.id, index: c.index, hash: m.frozenHash.get(k) ?? m.shipped.get(k)!, file: '' }; });
    };
  }

  /** Freeze, final round, CRIU dump, CPU image to the target; the app ends here. Failure: the app runs on. */
  async cutover(id: string): Promise<Message<'cutover-result'>> {
    const m = this.get(id);
    if (m.phase !== 'pre-copy') throw new PhosError('ILLEGAL_STATE', `migration ${id} is in ${m.phase}, not pre-copy`);
    m.phase = 'cutover';
    const rec = this.d.registry.managed(m.pid);
    const sent = { bytes: 0 };
    rmSync(m.dir, { recursive: true, force: true });
    let r;
    this.d.busy.delete(m.pid);
    try {
      m.atFreeze = null;
      r = await checkpointProcess(this.d, {
        pid: m.pid, dir: join(m.dir, 'image'), kind: 'dump', ship: this.ship(m, rec.logPath, sent),
        onFrozen: (rep) => { m.atFreeze = changedChunks(rep); },
        onCriuStart: (dir) => {
          if (process.env.PHOS_MIGRATE_OVERLAP === '0') return; // A/B measurements: all of it after the dump
          this.streamPages(m, dir);
          m.final = this.finalRound(m, this.d.keeper.allocations(m.pid));
          m.final.catch(() => undefined); // ship() awaits it and reports its failure
        },
      }, noReport);
    } catch (err) {
      await m.final?.catch(() => undefined); // nothing of this cutover is still sending when the app thaws
      await m.pages?.abort();
      m.phase = 'pre-copy';
      this.d.busy.add(m.pid);
      throw err;
    }
    m.phase = 'dumped';
    // The target restores under the same pid: on one machine (hosts as namespaces) it must be gone first.
    // Polled finely: this wait is inside the downtime.
    for (const end = Date.now() + 5000; existsSync(`/proc/${m.pid}`) && Date.now() < end;) await new Promise((res) => setTimeout(res, 2));
    return {
      v: PROTO_VERSION, manifest: readFileSync(join(r.dir, 'manifest.json'), 'utf8'), finalBytes: sent.bytes, freezeMs: r.stallMs,
      postcopyChunks: m.postcopy.length, postcopyBytes: m.postcopy.reduce((s, c) => s + c.length, 0),
    };
  }

  /** commit: the target runs the app; drop the kept memory and the local image. abort: take the app back. */
  async end(id: string, outcome: 'commit' | 'abort'): Promise<{ outcome: string; pid: number | null }> {
    const m = this.active.get(id);
    if (!m) return { outcome: 'unknown', pid: null };
    m.abort.abort();
    m.stopDemand?.();
    const log = this.log.child({ migrationId: id, pid: m.pid });
    let pid: number | null = null;
    try {
      await pccl.transportClose(m.sender.id).catch((err: unknown) => log.warn({ err }, 'transport close failed'));
      if (m.phase === 'dumped' && outcome === 'commit') {
        await this.d.keeper.releaseAll(m.pid);
        log.info('migration committed: kept memory released');
      } else if (m.phase === 'dumped') {
        // The app was dumped for the target, which did not take it: restore it here from the local CRIU
        // image and the kept device memory (nothing is read back from disk for the GPU).
        const r = await restoreImage(this.d, join(m.dir, 'image'), noReport, { regions: this.d.keeper.allocations(m.pid) });
        pid = r.info.pid;
        log.info({ ms: r.ms }, 'migration aborted after cutover: the app runs here again');
      }
      return { outcome, pid };
    } finally {
      m.phase = 'ended';
      this.active.delete(id);
      this.d.busy.delete(m.pid);
      rmSync(m.dir, { recursive: true, force: true });
    }
  }
}
