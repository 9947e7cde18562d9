// The target side of a live migration: a pccl transport receiver per migration; device chunks land in
// keeper memory reserved per announced allocation, CPU files (CRIU image, the app's log) in file
// mappings under the state directory. The restore is a keeper-path restore whose device memory is
// already filled (restore.ts `regions`): CRIU restore, driver restore, thaw hands the regions over.
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import type { Logger } from '../../../common/src/index.ts';
import * as pccl from '../../../native/pccl/pccl.ts';
import { PROTO_VERSION, PhosError, subjects, type Frame, type GpuMapEntry, type Message } from '../../../proto/src/index.ts';
import type { Reporter } from './checkpoint.ts';
import type { FillChunk } from './fill.ts';
import type { KeptAllocation } from './keeper.ts';
import type { LibphosLink } from './libphos-link.ts';
import { restoreImage, type RestoreDeps } from './restore.ts';
import type { MeshMember } from './mesh.ts';

/** A received file, mapped as the transport's destination; `size`: its final size (null while it grows). */
interface IncomingFile { alloc: number; path: string; fd: number; map: number; size: number | null }

interface Incoming {
  id: string;
  pid: number;
  from: string;
  receiver: number;
  dir: string;
  regions: Map<number, KeptAllocation>;
  files: IncomingFile[];
  /** The first receiver error (a broken frame, a stream that did not come back). */
  error: PhosError | null;
  /** Regions handed to a restored app (the keeper owns them then). */
  adopted: boolean;
  /** This node's GPU for each of the app's devices (index = the app's ordinal); absent = the same ordinal. */
  gpus: number[];
  /** The hash of the last verified arrival of each chunk, by "alloc:offset". */
  got: Map<string, string>;
  /** Post-copy: the chunks the app waits for at the gate, opened as they arrive. */
  post: PostCopyFill | null;
}

/**
 * Post-copy on the target: the app runs with these slab chunks behind libphos's gate; each one that
 * arrives with the hash the source recorded at the freeze is let through. `done` settles when all have.
 */
class PostCopyFill {
  private readonly left = new Map<string, { gate: number; hash: string; length: number }>();
  /** gate index -> "alloc:offset" of the chunks still to come, and those already asked for. */
  private readonly byGate = new Map<number, string>();
  private readonly asked = new Set<string>();
  private queue: number[] = [];
  private flushing: Promise<void> | null = null;
  private finish: (err?: Error) => void = () => {};
  readonly done: Promise<void>;
  readonly total: { chunks: number; bytes: number };
  private readonly t0 = performance.now();

  constructor(private readonly pid: number, chunks: FillChunk[], private readonly link: LibphosLink, private readonly log: Logger) {
    for (const c of chunks) { this.left.set(`${c.alloc}:${c.offset}`, c); this.byGate.set(c.gate, `${c.alloc}:${c.offset}`); }
    this.total = { chunks: chunks.length, bytes: chunks.reduce((s, c) => s + c.length, 0) };
    this.done = new Promise<void>((res, rej) => { this.finish = (err) => (err ? rej(err) : res()); });
    this.done.catch(() => undefined);
    if (chunks.length === 0) this.finish();
  }

  get ms(): number { return performance.now() - this.t0; }

  /** The chunks of a gate-wait (gate indices) still to come and not asked for yet, to ask the source for. */
  wanted(gates: number[]): { alloc: number; offset: number }[] {
    const out = [];
    for (const g of gates) {
      const k = this.byGate.get(g);
      if (k === undefined || !this.left.has(k) || this.asked.has(k)) continue;
      this.asked.add(k);
      const [alloc, offset] = k.split(':').map(Number) as [number, number];
      out.push({ alloc, offset });
    }
    return out;
  }

  arrived(alloc: number, offset: number, hash: string): void {
    const k = `${alloc}:${offset}`;
    const c = this.left.get(k);
    if (!c || c.hash !== hash) return;
    this.left.delete(k);
    this.queue.push(c.gate);
    this.flushing ??= this.flush();
  }

  /** Opens the gate for what arrived, in batches, while more arrives. */
  private async flush(): Promise<void> {
    try {
      while (this.queue.length) {
        const chunks = this.queue.splice(0);
        await this.link.request(this.pid, 'gate', { chunks });
      }
      if (this.left.size === 0) {
        this.log.info({ pid: this.pid, chunks: this.total.chunks, ms: Math.round(this.ms) }, 'post-copy complete: every chunk arrived');
        this.finish();
      }
    } catch (err) {
      this.log.error({ pid: this.pid, err }, 'post-copy: the gate could not be opened');
      this.finish(err as Error);
    } finally {
      this.flushing = null;
      if (this.queue.length) this.flushing = this.flush();
    }
  }
}

const noReport: Reporter = { phase: () => {}, step: () => {} };

/** The address other agents reach this node's transport at: the configured one, else the first external IPv4. */
export function advertisedAddr(configured: string | null): string {
  if (configured && configured !== '0.0.0.0') return configured;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

export class MigrationsIn {
  private readonly active = new Map<string, Incoming>();

  constructor(private readonly d: RestoreDeps & { mesh: () => MeshMember }, private readonly dataAddr: string | null, private readonly log: Logger) {}

  /**
   * libphos's events of a process restored here: during its post-copy, the chunks it waits for at the
   * gate are asked of the source, which sends them ahead of the rest.
   */
  onEvent(pid: number, e: Frame<'event'>): void {
    if (e.kind !== 'gate-wait' || !e.chunks) return;
    for (const m of this.active.values()) {
      if (m.pid !== pid || !m.post) continue;
      const chunks = m.post.wanted(e.chunks);
      if (chunks.length) this.d.mesh().publish(subjects.migrationDemand(m.id), 'postcopy-demand', { v: PROTO_VERSION, id: m.id, chunks });
    }
  }

  private get(id: string): Incoming {
    const m = this.active.get(id);
    if (!m) throw new PhosError('NOT_FOUND', `no incoming migration ${id} on this node`, { remedy: 'the target was restarted or the migration ended; retry it' });
    if (m.error) throw m.error;
    return m;
  }

  /** Opens the receiver the source will connect to. */
  prepare(req: Message<'prepare-target'>): Message<'target-ready'> {
    if (this.active.has(req.id)) throw new PhosError('ILLEGAL_STATE', `migration ${req.id} is already prepared here`);
    const host = this.dataAddr ?? '0.0.0.0';
    const dir = join(this.d.o.stateDir, 'incoming', req.id);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(dir, 'criu'), { recursive: true });
    const m: Incoming = { id: req.id, pid: req.pid, from: req.from, receiver: 0, dir, regions: new Map(), files: [], error: null, adopted: false, gpus: req.gpus ?? [], got: new Map(), post: null };
    const log = this.log.child({ migrationId: req.id });
    const rx = pccl.transportListen({ host, port: 0, streams: req.streams }, (e) => {
      if (e.type === 'chunk') { m.got.set(`${e.alloc}:${e.offset}`, e.hash); m.post?.arrived(e.alloc, e.offset, e.hash); }
      else if (e.type === 'error') { m.error ??= e.error; log.warn({ err: e.error }, 'transport receiver error'); }
      else if (e.type === 'corrupt') log.warn({ alloc: e.alloc, offset: e.offset }, 'chunk failed its hash check; the source re-sends it');
      else if (e.type === 'stream-closed') log.info({ stream: e.stream, reason: e.reason }, 'transport stream closed');
    });
    m.receiver = rx.id;
    this.active.set(req.id, m);
    log.info({ pid: req.pid, from: req.from, port: rx.port, streams: req.streams }, 'migration target prepared');
    return { v: PROTO_VERSION, host: advertisedAddr(this.dataAddr), port: rx.port, streams: req.streams };
  }

  /** Reserves device memory for allocations the source announced; their chunks land there. */
  async allocs(req: Message<'migrate-allocs'>): Promise<{ reserved: number }> {
    const m = this.get(req.id);
    let reserved = 0;
    for (const a of req.allocations) {
      const old = m.regions.get(a.id);
      if (old && old.size === a.size) continue;
      if (old) await pccl.keeperRelease(old.region).catch(() => undefined);
      const device = a.device ?? 0, gpu = m.gpus[device] ?? device;
      const r = await pccl.keeperSpare(a.size, gpu);
      m.regions.set(a.id, { id: a.id, va: a.va, size: a.size, kind: a.kind, region: r.id, device, gpu });
      pccl.transportRegisterDest(m.receiver, a.id, { dst: r.id });
      reserved += a.size;
    }
    return { reserved };
  }

  /** Where an offered file goes: criu/… under the migration's image, the app's log at its own path. */
  private filePath(m: Incoming, name: string): string {
    const n = normalize(name);
    if (isAbsolute(n)) return n;
    if (!n.startsWith('criu/') || n.includes('..')) throw new PhosError('BAD_ARGS', `migration ${m.id}: refusing file name ${name}`);
    return join(m.dir, n);
  }

  /** Makes a mapped file per wanted offer; a log that is already here at that size (same machine) is skipped. */
  files(req: Message<'migrate-files'>): Message<'files-wanted'> {
    const m = this.get(req.id);
    const wanted: number[] = [];
    for (const f of req.files) {
      const path = this.filePath(m, f.name);
      // A growing file's final size: its bytes came already; it is cut to size when the files close.
      const grown = m.files.find((x) => x.path === path && x.size === null);
      if (grown && !f.growing) { grown.size = f.size; continue; }
      if (isAbsolute(f.name) && existsSync(path) && statSync(path).size === f.size) continue;
      mkdirSync(dirname(path), { recursive: true });
      const fd = openSync(path, 'w+');
      ftruncateSync(fd, f.size);
      if (f.size === 0) { closeSync(fd); continue; }
      const map = pccl.mapFd(fd, f.size, true);
      m.files.push({ alloc: f.alloc, path, fd, map, size: f.growing ? null : f.size });
      pccl.transportRegisterDest(m.receiver, f.alloc, { dst: map });
      wanted.push(f.alloc);
    }
    return { v: PROTO_VERSION, allocs: wanted };
  }

  private closeFiles(m: Incoming): void {
    for (const f of m.files) {
      try { pccl.unmap(f.map); } catch { /* already */ }
      try { if (f.size !== null) ftruncateSync(f.fd, f.size); } catch { /* restore reports a short file */ }
      try { closeSync(f.fd); } catch { /* already */ }
    }
    m.files = [];
  }

  /**
   * Every GPU the app saw, mapped to the one its memory was reserved on, when that is not the same GPU (by
   * UUID): then the driver restore needs UUID pairs for all of them (another node's GPUs have other UUIDs).
   * Undefined when each lands on its own GPU (two agents of one machine).
   */
  private async gpuMap(m: Incoming, manifest: string): Promise<GpuMapEntry[] | undefined> {
    const seen = (JSON.parse(manifest) as { gpus?: string[] }).gpus ?? [];
    const node = await this.d.keeper.agentGpus();
    // The devices the coordinator placed; GPUs the app saw but did not use take the ones left over.
    const map = m.gpus.length ? m.gpus.map((to, from) => ({ from, to })).filter(({ from }) => from < seen.length) : seen.map((_u, i) => ({ from: i, to: i }));
    return map.every(({ from, to }) => node[to] === seen[from]) ? undefined : map;
  }

  /** Restores the app from the received CPU image and device memory; resolves once it runs here. */
  async restore(req: Message<'restore-migrated'>): Promise<Message<'restore-migrated-result'>> {
    const m = this.get(req.id);
    const t0 = performance.now();
    this.closeFiles(m);
    // A post-copy's chunks still come through the receiver: it closes at the migration's end then.
    if (!req.postcopy) pccl.transportReceiverClose(m.receiver);
    writeFileSync(join(m.dir, 'manifest.json'), req.manifest);
    this.log.debug({ migrationId: m.id, ms: Math.round(performance.now() - t0) }, 'receiver closed; restoring');
    const pending = await this.stillToCome(m, req.manifest, req.postcopy ?? 0);
    const r = await restoreImage(this.d, m.dir, noReport, {
      regions: [...m.regions.values()], gpuMap: await this.gpuMap(m, req.manifest), pending,
      onPending: (chunks) => { m.post = new PostCopyFill(m.pid, chunks, this.d.link, this.log.child({ migrationId: m.id })); },
    });
    m.adopted = true;
    // Allocations the app freed during pre-copy arrived here but are not in its final image.
    const kept = new Set(this.d.keeper.allocations(r.info.pid).map((a) => a.region));
    for (const x of m.regions.values()) if (!kept.has(x.region)) await pccl.keeperRelease(x.region).catch(() => undefined);
    this.log.info({ migrationId: m.id, pid: r.info.pid, ms: r.ms, pending: pending.length }, 'migrated process runs here');
    return { v: PROTO_VERSION, pid: r.info.pid, ms: r.ms, pending: pending.length };
  }

  /**
   * The chunks of the final image whose bytes have not arrived here (their last verified arrival has
   * another hash). Only a post-copy may leave any, exactly as many as the source said, all in slabs;
   * anything else means lost data, and the restore is refused (the source takes the app back).
   */
  private async stillToCome(m: Incoming, manifest: string, expected: number): Promise<{ alloc: number; index: number; hash: string }[]> {
    const man = JSON.parse(manifest) as { chunkSize: number; chunks: { alloc: number; index: number; hash: string }[] };
    const slab = new Set([...m.regions.values()].filter((a) => a.kind === 'slab').map((a) => a.id));
    const check = () => man.chunks.filter((c) => m.got.get(`${c.alloc}:${c.index * man.chunkSize}`) !== c.hash);
    let missing = check();
    // Arrival events reach JS through the addon's queue: give the last ones a moment before judging.
    for (let i = 0; i < 500 && missing.length !== expected; i++) { await new Promise((res) => setTimeout(res, 2)); missing = check(); }
    if (missing.length !== expected || missing.some((c) => !slab.has(c.alloc))) {
      const c = missing[0];
      throw new PhosError('IMAGE_CORRUPT', `migration ${m.id}: ${missing.length} chunks did not arrive as the source recorded them (${expected} follow by post-copy)${c ? `, e.g. chunk ${c.index} of allocation ${c.alloc}` : ''}`, { details: { missing: missing.length, expected } });
    }
    return missing;
  }

  /** Post-copy: resolves once every chunk the app waits for arrived and went through the gate. */
  async postcopyWait(id: string): Promise<Message<'postcopy-result'>> {
    const m = this.get(id);
    if (!m.post) return { v: PROTO_VERSION, chunks: 0, bytes: 0, ms: 0 };
    await m.post.done;
    return { v: PROTO_VERSION, chunks: m.post.total.chunks, bytes: m.post.total.bytes, ms: m.post.ms };
  }

  /** commit: keep the app, drop the receiver and image. abort: free everything reserved for it. */
  async end(id: string, outcome: 'commit' | 'abort'): Promise<{ outcome: string }> {
    const m = this.active.get(id);
    if (!m) return { outcome: 'unknown' };
    this.active.delete(id);
    this.closeFiles(m);
    pccl.transportReceiverClose(m.receiver);
    if (!m.adopted) for (const r of m.regions.values()) await pccl.keeperRelease(r.region).catch(() => undefined);
    if (outcome === 'abort' && m.adopted) {
      // Aborted after the app was released here (the coordinator could not commit): the source keeps its
      // copy, so this one must not run on.
      try { process.kill(m.pid, 'SIGKILL'); } catch { /* gone */ }
    }
    rmSync(m.dir, { recursive: true, force: true });
    this.log.info({ migrationId: id, outcome }, 'incoming migration ended');
    return { outcome };
  }
}
