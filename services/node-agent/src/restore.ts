// restore of an image on this node, as a step list with run/undo: everything that can be checked cheaply
// is checked before CRIU makes a process (manifest, CRIU file sizes, every gpu/ chunk file's size, the pid
// is free), then CRIU restore, driver restore + unlock, thaw with every slab chunk pending; the chunks are
// read (hash-checked) in the background afterwards (fill.ts). A failure after CRIU kills the process.
import { join } from 'node:path';
import type { Logger } from '../../../common/src/index.ts';
import * as pccl from '../../../native/pccl/pccl.ts';
import { PhosError, type GpuMapEntry, type ProcessInfo } from '../../../proto/src/index.ts';
import type { CompiledAgentOptions } from './agent-options.ts';
import type { Reporter } from './checkpoint.ts';
import { criuRestore, criuVersion } from './criu.ts';
import { readManifest, verifyChunkFiles, verifyCriuFiles, verifyGpuChunks } from './image.ts';
import { Filler, Prefill, chunkKey, fillChunks, type FillChunk } from './fill.ts';
import type { Keeper } from './keeper.ts';
import { LIBPHOS_CHUNK, type LibphosLink } from './libphos-link.ts';
import type { ProcessRecord, ProcessRegistry } from './process-registry.ts';
import { runSteps, type Step } from './step-runner.ts';
import { thawProcess } from './thaw.ts';
import type { ImageManifest } from './image.ts';
import type { KeptAllocation } from './keeper.ts';

async function releaseAll(list: KeptAllocation[]): Promise<void> {
  for (const a of list) await pccl.keeperRelease(a.region).catch(() => undefined);
}

/** Where the image's GPUs land: the node's ordinal per image device ordinal, and the driver's UUID pairs. */
export interface GpuPlacement {
  gpuOf(device: number): number;
  /** [old, new] for every GPU the process saw; empty = the GPUs it was checkpointed on. */
  pairs: pccl.GpuPair[];
}

/**
 * Places the image's GPUs on this node. Without a map each GPU stays itself (by UUID; the app's ordinal
 * where the image or node cannot say). With one, the named GPUs go where it says and the others to the
 * node's GPUs left over (their own first): the driver wants every GPU the process saw mapped, once.
 * BAD_ARGS names an ordinal neither side has, before anything is touched.
 */
export async function placeGpus(keeper: Keeper, m: ImageManifest, map: GpuMapEntry[] | undefined): Promise<GpuPlacement> {
  const node = await keeper.agentGpus();
  const seen = m.gpus ?? [];
  if (!map?.length) {
    return { gpuOf: (dev) => { const i = node.indexOf(seen[dev] ?? ''); return i >= 0 ? i : dev; }, pairs: [] };
  }
  if (!seen.length) throw new PhosError('BAD_ARGS', 'the image does not record its GPUs (taken by an older agent or libphos): --gpu-map cannot name them', { remedy: 'restore without --gpu-map' });
  const target: (number | undefined)[] = seen.map(() => undefined);
  for (const { from, to } of map) {
    if (from >= seen.length) throw new PhosError('BAD_ARGS', `--gpu-map ${from}=${to}: the image has no GPU ${from} (the process saw ${seen.length}: 0-${seen.length - 1})`, { details: { from } });
    if (to >= node.length) throw new PhosError('BAD_ARGS', `--gpu-map ${from}=${to}: this node has no GPU ${to} (it has ${node.length}${node.length ? `: 0-${node.length - 1}` : ''})`, { details: { to } });
    if (target[from] !== undefined) throw new PhosError('BAD_ARGS', `--gpu-map names image GPU ${from} twice`);
    if (target.includes(to)) throw new PhosError('BAD_ARGS', `--gpu-map sends two GPUs to GPU ${to}`);
    target[from] = to;
  }
  const free = () => node.findIndex((_u, i) => !target.includes(i));
  seen.forEach((uuid, i) => {
    if (target[i] !== undefined) return;
    const own = node.indexOf(uuid);
    target[i] = own >= 0 && !target.includes(own) ? own : free();
  });
  if (target.some((t) => t === undefined || t < 0)) throw new PhosError('BAD_ARGS', `the process saw ${seen.length} GPUs; this node has ${node.length}, too few to map them all`);
  const to = target as number[];
  return { gpuOf: (dev) => to[dev] ?? dev, pairs: seen.map((uuid, i) => [uuid, node[to[i]!]!] as pccl.GpuPair) };
}

/** Fresh keeper memory per allocation (on its placed GPU), not filled yet; `app` handles (no VA of their own to gate) are. */
async function allocateFresh(dir: string, m: ImageManifest, lazy: boolean, report: Reporter, place: GpuPlacement): Promise<KeptAllocation[]> {
  const out: KeptAllocation[] = [];
  try {
    for (const a of m.allocations) {
      const device = a.device ?? 0, gpu = place.gpuOf(device);
      const r = await pccl.keeperSpare(a.size, gpu);
      out.push({ id: a.id, va: a.va, size: a.size, kind: a.va === 0 ? 'app' : 'slab', region: r.id, device, gpu });
    }
    // Filled now (each chunk verified as it is read): app handles, or everything when the image cannot be gated.
    const eager = out.filter((a) => !lazy || a.kind === 'app');
    const bytesTotal = eager.reduce((s, a) => s + a.size, 0);
    let bytesDone = 0;
    for (const a of eager) {
      const items = m.chunks.filter((c) => c.alloc === a.id).map((c) => ({
        offset: c.index * m.chunkSize, length: Math.min(m.chunkSize, a.size - c.index * m.chunkSize), path: join(dir, c.file), hash: c.hash, c,
      }));
      try {
        await pccl.readChunks({ dst: a.region, items: items.map(({ offset, length, path, hash }) => ({ offset, length, path, hash })) });
      } catch (err) {
        if (err instanceof PhosError && err.code === 'IMAGE_CORRUPT') {
          const bad = items.find((it) => it.path === String(err.details.path)) ?? items[0]!;
          throw new PhosError('IMAGE_CORRUPT', `chunk ${bad.c.index} of allocation ${a.id} (${bad.path}): ${err.message}`, { details: { ...err.details, path: bad.path, alloc: a.id, chunk: bad.c.index }, cause: err });
        }
        throw err;
      }
      bytesDone += a.size;
      report.phase('fill-gpu', bytesDone, bytesTotal);
    }
  } catch (err) {
    await releaseAll(out);
    throw err;
  }
  return out;
}

export interface RestoreDeps {
  o: CompiledAgentOptions;
  registry: ProcessRegistry;
  keeper: Keeper;
  link: LibphosLink;
  log: Logger;
  /** A keeper-path restore hands its background fill over (registered before the thaw: gate-wait events). */
  onFill?(pid: number, filler: Filler): void;
}

export interface RestoreResult {
  info: ProcessInfo;
  /** restore request to the app released (thawed), ms. */
  ms: number;
  /** The background fill (keeper path): chunks pending at the thaw, and when the fill ends. */
  fill: Filler | null;
}

interface Ctx { rec: ProcessRecord | null; pid: number }

/**
 * `regions`: device memory that already holds every allocation's bytes (a migration target's received
 * copy, or a migration source's kept memory on rollback). They are handed to the app at the thaw, nothing
 * is read from gpu/; on failure they stay the caller's.
 */
export interface RestoreOptions {
  regions?: KeptAllocation[];
  /** Onto other GPUs of this node (placeGpus); the regions, when given, must already be on them. */
  gpuMap?: GpuMapEntry[];
  /** Read and hash-check every gpu/ chunk before any process exists (a keeper-path restore is lazy otherwise). */
  verify?: boolean;
  /**
   * With `regions`: slab chunks whose bytes have not arrived yet (a post-copy migration). They stay behind
   * libphos's gate at the thaw; `onPending` gets them (with their gate indices) before the app runs, and
   * whoever fills them opens the gate.
   */
  pending?: { alloc: number; index: number; hash: string }[];
  onPending?: (chunks: FillChunk[]) => void;
}

/** Matches caller-filled regions to the manifest's allocations (same ids and sizes, none missing). */
function matchRegions(m: ImageManifest, regions: KeptAllocation[]): KeptAllocation[] {
  return m.allocations.map((a) => {
    const r = regions.find((x) => x.id === a.id);
    if (!r || r.size !== a.size) throw new PhosError('IMAGE_CORRUPT', `allocation ${a.id} (${a.size} B) has no filled device memory of that size`, { details: { alloc: a.id } });
    return { ...r, va: a.va };
  });
}

export async function restoreImage(d: RestoreDeps, dirArg: string, report: Reporter, opts: RestoreOptions = {}): Promise<RestoreResult> {
  const t0 = performance.now();
  report.phase('verify');
  const { dir, manifest: m } = readManifest(dirArg);
  const place = await placeGpus(d.keeper, m, opts.gpuMap);
  await criuVersion({ bin: d.o.criu ?? undefined });
  verifyCriuFiles(dir, m);
  const keeperPath = m.agent.path === 'keeper';
  // Safe path: the CRIU image holds the GPU state; the chunks are only checked. Keeper path: every chunk
  // file must exist with its size; fresh device memory per allocation is allocated (not filled) before any
  // process exists, and the chunks are read (each hash-checked as it is read) after the thaw, lazily.
  let fresh: KeptAllocation[] = [];
  const given = opts.regions !== undefined;
  // The gate works in libphos's chunks: an image cut otherwise is filled before the thaw.
  const lazy = keeperPath && m.chunkSize === LIBPHOS_CHUNK && !given;
  if (given) {
    if (!keeperPath) throw new PhosError('ILLEGAL_STATE', `${dir} is a safe-path image; filled regions need a keeper-path image`);
    fresh = matchRegions(m, opts.regions!);
  } else if (!keeperPath) await verifyGpuChunks(dir, m, (p) => report.phase('verify', p.bytesDone, p.bytesTotal));
  else {
    verifyChunkFiles(dir, m);
    if (opts.verify) await verifyGpuChunks(dir, m, (p) => report.phase('verify', p.bytesDone, p.bytesTotal));
    fresh = await allocateFresh(dir, m, lazy, report, place);
  }
  let filler = null as Filler | null;
  // The chunks start landing now, while CRIU works; the thaw gates only those not read by then.
  let prefill: Prefill | null = null;
  if (lazy && d.o.prefill) {
    const slabs = new Map(fresh.filter((a) => a.kind === 'slab').map((a) => [a.id, a]));
    prefill = new Prefill(fillChunks(dir, m.chunks, slabs, 0, m.chunkSize), d.log.child({ pid: m.source.pid, op: 'prefill' }));
  }
  const stopPrefill = async () => { const done = await prefill?.stop(); prefill = null; return done ?? new Set<string>(); };
  const pid = m.source.pid;
  const log = d.log.child({ pid, op: 'restore' });
  // The pid must be free before anything runs: a clash is refused here, never half-way.
  log.debug({ ms: Math.round(performance.now() - t0) }, 'image checked; claiming the pid');
  let rec: ProcessRecord;
  try {
    // A process this agent just dumped (a GPU move, a migration taken back) may not be reaped yet.
    await d.registry.settled(pid, 5000);
    rec = d.registry.adoptRestoring({ pid, job: m.source.job, argv: m.agent.argv, logPath: m.agent.logPath, restoredFrom: dir });
  } catch (err) {
    await stopPrefill();
    if (!given) await releaseAll(fresh);
    throw err;
  }
  const ctx: Ctx = { rec, pid };
  // libphos reconnects as soon as CRIU has made the process: listen for its hello before that.
  const hello = keeperPath ? d.link.waitForHello(pid, 60_000) : null;
  hello?.catch(() => undefined);
  const steps: Step<Ctx>[] = [
    {
      name: 'criu-restore',
      run: async () => {
        report.phase('criu-restore');
        const r = await criuRestore({ dir: join(dir, m.criu.dir), bin: d.o.criu ?? undefined });
        if (r.pid !== pid) throw new PhosError('CRIU_FAILED', `criu restored ${dir} as pid ${r.pid}, expected ${pid}`);
      },
      undo: async () => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } },
    },
    {
      name: 'driver-restore',
      run: async (c) => {
        report.phase('driver-restore');
        c.rec!.machine.transition('thawing', place.pairs.length ? 'criu restored; driver restore onto other GPUs' : 'criu restored; driver restore');
        await pccl.driverCheckpoint('restore', pid, undefined, place.pairs);
      },
    },
    {
      name: 'unlock',
      run: async (c) => {
        report.phase('unlock');
        await pccl.driverCheckpoint('unlock', pid);
        if (!keeperPath) { c.rec!.machine.transition('running', 'restored'); d.registry.watch(pid); }
      },
    },
  ];
  if (keeperPath) {
    steps.push({
      name: 'thaw',
      run: async (c) => {
        report.phase('thaw');
        let pending: number[] = [];
        // Chunks of the fresh slabs that stay behind libphos's gate, with their gate indices.
        const behindGate = async (list: Parameters<typeof fillChunks>[1]) => {
          const h = await hello!;
          const slabs = new Map(fresh.filter((a) => a.kind === 'slab').map((a) => [a.id, a]));
          const chunks = fillChunks(dir, list, slabs, h.vaBase, m.chunkSize);
          return { chunks, vaBase: h.vaBase, outside: chunks.find((x) => x.gate < 0 || !Number.isInteger(x.gate)) };
        };
        if (lazy) {
          const read = await stopPrefill();
          const { chunks, vaBase, outside } = await behindGate(m.chunks.filter((c) => !read.has(chunkKey(c))));
          if (read.size) log.info({ chunks: read.size, of: m.chunks.length }, 'chunks read while CRIU restored');
          if (outside) throw new PhosError('IMAGE_CORRUPT', `${dir}: allocation ${outside.alloc} lies outside the process's VA region (base 0x${vaBase.toString(16)})`);
          filler = new Filler(pid, chunks, d.link, d.keeper, log);
          d.onFill?.(pid, filler);
          pending = chunks.map((x) => x.gate);
        }
        if (given && opts.pending?.length) {
          const { chunks, outside } = await behindGate(opts.pending.map((p) => ({ ...p, file: '' })));
          if (chunks.length !== opts.pending.length || outside) {
            throw new PhosError('ILLEGAL_STATE', `pid ${pid}: chunks still to arrive must lie in libphos's slabs (${opts.pending.length} named, ${chunks.length} found)`);
          }
          opts.onPending?.(chunks);
          pending = chunks.map((x) => x.gate);
        }
        await thawProcess(d.link, pid, fresh, hello, pending);
        d.keeper.adopt(pid, fresh);
        fresh = [];
        c.rec!.machine.transition('running', pending.length ? `restored and thawed; ${pending.length} chunks fill in the background` : 'restored and thawed');
        d.registry.watch(pid);
        filler?.start();
      },
    });
  }
  await runSteps('restore', steps, ctx, {
    log,
    onStep: (r) => report.step(r),
    finish: async (c, err) => {
      await stopPrefill();
      if (err && filler) { filler.stop(); filler.start(); await filler.finished; }
      if (!given) await releaseAll(fresh);
      if (!err) return;
      if (c.rec && c.rec.machine.can('failed')) c.rec.machine.transition('failed', err.message);
      else d.registry.drop(pid);
    },
  });
  report.phase('done');
  const ms = performance.now() - t0;
  log.info({ ms: Math.round(ms * 10) / 10, pendingChunks: filler?.status.chunksTotal ?? 0 }, 'restored: app released');
  return { info: d.registry.info(rec, d.link.linked(pid), d.keeper.allocations(pid).length, d.keeper.bytes(pid)), ms, fill: filler };
}
