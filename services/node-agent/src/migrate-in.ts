// The target side of a live migration: a pccl transport receiver per migration; device chunks land in
// keeper memory reserved per announced allocation, CPU files (CRIU image, the app's log) in file
// mappings under the state directory. The restore is a keeper-path restore whose device memory is
// already filled (restore.ts `regions`): CRIU restore, driver restore, thaw hands the regions over.
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import type { Logger } from '../../../common/src/index.ts';
import * as pccl from '../../../native/pccl/pccl.ts';
import { PROTO_VERSION, PhosError, type GpuMapEntry, type Message } from '../../../proto/src/index.ts';
import type { Reporter } from './checkpoint.ts';
import type { KeptAllocation } from './keeper.ts';
import { restoreImage, type RestoreDeps } from './restore.ts';

interface IncomingFile { alloc: number; path: string; fd: number; map: number }

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

  constructor(private readonly d: RestoreDeps, private readonly dataAddr: string | null, private readonly log: Logger) {}

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
    const m: Incoming = { id: req.id, pid: req.pid, from: req.from, receiver: 0, dir, regions: new Map(), files: [], error: null, adopted: false, gpus: req.gpus ?? [] };
    const log = this.log.child({ migrationId: req.id });
    const rx = pccl.transportListen({ host, port: 0, streams: req.streams }, (e) => {
      if (e.type === 'error') { m.error ??= e.error; log.warn({ err: e.error }, 'transport receiver error'); }
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
      if (isAbsolute(f.name) && existsSync(path) && statSync(path).size === f.size) continue;
      mkdirSync(dirname(path), { recursive: true });
      const fd = openSync(path, 'w+');
      ftruncateSync(fd, f.size);
      if (f.size === 0) { closeSync(fd); continue; }
      const map = pccl.mapFd(fd, f.size, true);
      m.files.push({ alloc: f.alloc, path, fd, map });
      pccl.transportRegisterDest(m.receiver, f.alloc, { dst: map });
      wanted.push(f.alloc);
    }
    return { v: PROTO_VERSION, allocs: wanted };
  }

  private closeFiles(m: Incoming): void {
    for (const f of m.files) {
      try { pccl.unmap(f.map); } catch { /* already */ }
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
    pccl.transportReceiverClose(m.receiver);
    writeFileSync(join(m.dir, 'manifest.json'), req.manifest);
    this.log.debug({ migrationId: m.id, ms: Math.round(performance.now() - t0) }, 'receiver closed; restoring');
    const r = await restoreImage(this.d, m.dir, noReport, { regions: [...m.regions.values()], gpuMap: await this.gpuMap(m, req.manifest) });
    m.adopted = true;
    // Allocations the app freed during pre-copy arrived here but are not in its final image.
    const kept = new Set(this.d.keeper.allocations(r.info.pid).map((a) => a.region));
    for (const x of m.regions.values()) if (!kept.has(x.region)) await pccl.keeperRelease(x.region).catch(() => undefined);
    this.log.info({ migrationId: m.id, pid: r.info.pid, ms: r.ms }, 'migrated process runs here');
    return { v: PROTO_VERSION, pid: r.info.pid, ms: r.ms };
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
