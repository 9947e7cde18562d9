// pre-dump and dump of a managed process, as step lists with run/undo (step-runner.ts). Which path:
// `keeper` needs libphos connected, every device byte explained, and libphos's freeze op; otherwise the
// `safe` path: driver lock (+ gpu/ chunks from the keeper's references while locked), driver checkpoint,
// CRIU dump (GPU state in the CRIU image), driver restore + unlock. Until the app is released, any
// failure undoes what ran and the app continues; a partial image is removed.
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, statfsSync } from 'node:fs';
import { cp } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../../common/src/index.ts';
import * as pccl from '../../../native/pccl/pccl.ts';
import { AGENT_FAULT_POINTS, MANIFEST_VERSION, PhosError, type AgentFaultPoint, type CheckpointResult, type ControlPhase, type Manifest } from '../../../proto/src/index.ts';
import type { CompiledAgentOptions } from './agent-options.ts';
import { criuDump, criuVersion } from './criu.ts';
import { ImageRewriteError, trimZeroPages } from './criu-zero.ts';
import { createImageDir, criuFileSizes, readManifest, removeImageDir, writeGpuChunks, writeManifest, type ImageDir, type ImageManifest } from './image.ts';
import type { Keeper, KeptAllocation } from './keeper.ts';
import { thawProcess } from './thaw.ts';
import type { LibphosLink } from './libphos-link.ts';
import type { ProcessRecord, ProcessRegistry } from './process-registry.ts';
import { runSteps, type Step, type StepReport } from './step-runner.ts';
import { statusBytes } from './proc.ts';

export interface CheckpointDeps {
  o: CompiledAgentOptions;
  registry: ProcessRegistry;
  keeper: Keeper;
  link: LibphosLink;
  log: Logger;
}

export interface CheckpointRequest {
  pid: number;
  dir: string;
  parent?: string | null;
  kind: 'pre-dump' | 'dump';
  /**
   * A migration's cutover (keeper-path dump only): instead of writing gpu/ files, `ship` sends the
   * consistent device memory (and the sealed-to-be CRIU files) elsewhere and returns the chunk list for
   * the manifest; the kept memory is not released at the end (the caller owns it: commit or local rollback).
   */
  ship?: (allocs: KeptAllocation[], img: ImageDir) => Promise<Manifest['chunks']>;
  /** Keeper path: libphos's freeze reply (its `changed` chunks: written since the agent's last hash round). */
  onFrozen?: (rep: Record<string, unknown>) => void;
  /** Keeper path: CRIU starts dumping into `criuDir` now (the app is frozen and driver-checkpointed). */
  onCriuStart?: (criuDir: string) => void;
}

export interface Reporter {
  phase(phase: ControlPhase, bytesDone?: number, bytesTotal?: number): void;
  step(r: StepReport): void;
}

interface Ctx {
  rec: ProcessRecord;
  img: ImageDir;
  parent: { dir: string; manifest: ImageManifest } | null;
  criuVersion: string;
  chunks: Manifest['chunks'];
  written: number;
  fromParent: number;
  bytesWritten: number;
  lockedAt: number;
  releasedAt: number;
  criuMs: number;
  /** The process was left stopped by CRIU (dump): SIGKILL after the seal, SIGCONT on rollback. */
  stopped: boolean;
}

/** The fault point the agent was started with (PHOS_FAULT), read once. */
const FAULT = AGENT_FAULT_POINTS.find((f) => f === process.env.PHOS_FAULT) ?? null;

/** A step that fails when PHOS_FAULT names `point` (and does nothing otherwise). */
function faultStep<C>(point: AgentFaultPoint): Step<C>[] {
  if (FAULT !== point) return [];
  return [{ name: `fault ${point}`, run: async () => { throw new PhosError('INTERNAL', `fault injected at ${point} (PHOS_FAULT)`); } }];
}

/** Bytes beyond the process's resident memory and kept device memory that the image may need. */
const SPACE_SLACK = 8 << 20;
/** How long the stall waits for libphos to drop the driver copy's zero pages (it takes tens of ms). */
const SHED_TIMEOUT_MS = 1000;

function moveTo(rec: ProcessRecord, to: Parameters<ProcessRecord['machine']['transition']>[0], reason: string): void {
  if (rec.machine.state !== to && rec.machine.can(to)) rec.machine.transition(to, reason);
}

function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try { const l = readlinkSync(`/proc/${pid}/fd/${fd}`); if (l.startsWith('socket:')) out.add(l); } catch { /* closed meanwhile */ }
    }
  } catch { /* gone */ }
  return out;
}

/** DISK_FULL before anything is touched when the image cannot fit (the estimate is what CRIU and gpu/ will write at most). */
function checkSpace(dir: string, need: number): void {
  const st = statfsSync(dir);
  const free = st.bavail * st.bsize;
  if (free < need) {
    throw new PhosError('DISK_FULL', `${dir} has ${free} bytes free; the image needs up to ${need} (process memory + kept device memory)`, { details: { dir, free, need } });
  }
}

/** Why the keeper path cannot be taken (null: it can): libphos linked, every device byte explained and kept. */
export async function keeperPathRefusal(d: CheckpointDeps, pid: number, linked: boolean, allocs: number): Promise<string | null> {
  if (!d.o.keeperPath) return 'the keeper path is switched off in the agent config';
  if (!linked) return 'libphos is not connected';
  if (allocs === 0) return 'the keeper holds no device memory of this process';
  // alloc frames may still be queued behind the status reply (an app that grows, like vmm-grow): give the
  // keeper a moment to catch up before calling it behind.
  for (let attempt = 0; ; attempt++) {
    try {
      const st = await d.link.request(pid, 'status');
      if (Number(st.untrackedBytes) > 0) return `${String(st.untrackedBytes)} device bytes are not tracked by libphos (pass-through allocations)`;
      // Device memory that no libphos allocation explains is the driver's own residue (context, loaded
      // modules, local memory: ~0.5 GiB on an H200, 0 on cudasim). It reached the driver through no
      // allocation call, so it is neither shareable nor kept: the driver checkpoint copies and restores it
      // like any non-libphos process. It costs stall time, not correctness, so it is reported, not refused;
      // what would break a restore is memory that passed an allocation call untracked (checked above).
      if (typeof st.unexplainedBytes === 'number' && st.unexplainedBytes > 0) {
        d.log.info({ pid, residueBytes: st.unexplainedBytes }, 'driver residue left to the driver checkpoint');
      }
      const kept = d.keeper.allocations(pid).length;
      if (Number(st.slabs ?? 0) + Number(st.appHandles ?? 0) <= kept || st.slabs === undefined) return null;
      if (attempt >= 400) return `the keeper does not hold every allocation after ${attempt * 25} ms`;
    } catch (err) {
      return `libphos status failed: ${(err as Error).message}`;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface KeeperCtx {
  spares: { id: number; region: number }[];
  frozen: boolean;
  released: boolean;
  stopped: boolean;
  hidden: boolean;
  lockedAt: number;
  releasedAt: number;
  criuMs: number;
  /** The stage folder CRIU wrote this pre-dump's CPU image into (image.stageDir), until it moved. */
  stage: string | null;
  /** libphos's shed mailbox (the freeze reply's `shed`), or null. */
  shed: number | null;
  write: { chunks: Manifest['chunks']; written: number; fromParent: number; bytesWritten: number };
}

/**
 * The keeper path: libphos freezes (a pre-dump copies every allocation into keeper spare memory first:
 * the consistent point) and drops its device mappings, so the driver checkpoint and CRIU see an almost
 * empty context; then the driver restore + unlock and a thaw that hands the keeper's fds back. GPU bytes
 * move only afterwards, from spare (pre-dump) or kept (dump) memory to gpu/ while the app runs.
 */
async function keeperCheckpoint(d: CheckpointDeps, req: CheckpointRequest, report: Reporter,
  p: { rec: ProcessRecord; img: ImageDir; parent: { dir: string; manifest: ImageManifest } | null; version: string; allocs: KeptAllocation[]; gpus: string[] | undefined; t0: number; log: Logger }): Promise<CheckpointResult> {
  const { pid } = req;
  const pre = req.kind === 'pre-dump';
  const c: KeeperCtx = { spares: [], frozen: false, released: false, stopped: false, hidden: false, lockedAt: 0, releasedAt: 0, criuMs: 0, stage: null, shed: null, write: { chunks: [], written: 0, fromParent: 0, bytesWritten: 0 } };
  const unhide = () => { if (c.hidden) { d.link.accept(pid); c.hidden = false; } };
  const thaw = async () => {
    unhide();
    await thawProcess(d.link, pid, p.allocs, null);
    c.frozen = false;
  };
  const steps: Step<KeeperCtx>[] = [];
  if (pre) {
    // Spare device memory for the consistent copy, made before the freeze so the stall does not pay for it.
    steps.push({
      name: 'spare',
      run: async () => {
        report.phase('prepare');
        for (const a of p.allocs) c.spares.push({ id: a.id, region: (await pccl.keeperSpare(a.size, a.gpu ?? 0)).id });
      },
      undo: async () => { for (const s of c.spares) await pccl.keeperRelease(s.region).catch(() => undefined); c.spares = []; },
    });
  }
  if (!req.ship) {
    // The freeze runs a hash round on the GPU; the first one in a process loads libphos's helper kernels,
    // and the first on a machine JIT-compiles them (~160 ms on an H200). One round now, while the app
    // runs, keeps that out of the stall. Not in a migration's cutover: its freeze must report every chunk
    // written since its own last round.
    steps.push({
      name: 'warm',
      run: async () => { await d.link.request(pid, 'hash-round').catch((err: unknown) => p.log.debug({ pid, err: (err as Error).message }, 'warm-up hash round failed')); },
    });
  }
  steps.push({
    name: 'freeze',
    run: async () => {
      report.phase('freeze');
      moveTo(p.rec, 'freezing', `${req.kind}: libphos freeze`);
      c.lockedAt = performance.now();
      d.link.refuse(pid);
      c.hidden = true;
      const frozen = await d.link.request(pid, 'freeze', {});
      c.frozen = true;
      c.shed = typeof frozen.shed === 'number' && frozen.shed > 0 ? frozen.shed : null;
      req.onFrozen?.(frozen);
      const deadline = Date.now() + 3000;
      while (d.link.connected(pid)) {
        if (Date.now() > deadline) throw new PhosError('TIMEOUT', `pid ${pid}: libphos did not close its socket after the freeze`);
        await new Promise((r) => setTimeout(r, 2));
      }
      // The socket is closed and every frame before it handled: this is the final allocation set, and
      // libphos drained its work before dropping its mappings, so the keeper's references hold the
      // consistent point. The keeper copies it device-to-device into the spares (no fds cross the
      // socket, so any number of allocations works); allocations newer than the spares get one now.
      p.allocs = d.keeper.allocations(pid);
      if (pre) {
        for (const a of p.allocs) {
          let spare = c.spares.find((s) => s.id === a.id);
          if (!spare) {
            spare = { id: a.id, region: (await pccl.keeperSpare(a.size, a.gpu ?? 0)).id };
            c.spares.push(spare);
          }
          await pccl.keeperCopy(spare.region, 0, a.region, 0, a.size);
        }
      }
    },
    undo: async () => {
      if (c.released) return;
      if (c.frozen) await thaw();
      else unhide();
      moveTo(p.rec, 'running', 'rollback: thawed');
    },
  }, ...faultStep<KeeperCtx>('agent-after-freeze'), {
    name: 'lock',
    run: async () => { report.phase('lock'); await pccl.driverCheckpoint('lock', pid); },
    undo: async () => { if (!c.released) await pccl.driverCheckpoint('unlock', pid); },
  }, {
    name: 'checkpoint',
    run: async () => {
      report.phase('checkpoint');
      const before = statusBytes(pid, 'RssAnon');
      await pccl.driverCheckpoint('checkpoint', pid);
      // What the driver still copied into the process: the residue no allocation call explained.
      const after = statusBytes(pid, 'RssAnon');
      if (before !== null && after !== null) d.log.info({ pid, rssAnonGrowthBytes: after - before, rssAnonBytes: after }, 'driver checkpoint copied into host memory');
      moveTo(p.rec, 'frozen', 'driver checkpointed');
    },
    undo: async () => { if (!c.released) { moveTo(p.rec, 'thawing', 'rollback: driver restore'); await pccl.driverCheckpoint('restore', pid); } },
  }, ...faultStep<KeeperCtx>('agent-after-checkpoint'), {
    // The driver's copy is mostly zero pages: libphos drops them before CRIU would dump them. Best effort:
    // without an answer CRIU just dumps them.
    name: 'shed',
    run: async () => {
      if (!c.shed || !d.o.shedDriverCopy) return;
      try {
        const r = await pccl.driverCopyShed(pid, c.shed, SHED_TIMEOUT_MS);
        if (r.done) p.log.info({ pid, scannedBytes: r.scannedBytes, droppedBytes: r.droppedBytes, ms: Math.round(r.ms * 10) / 10 }, 'zero pages of the driver copy dropped');
        else p.log.warn({ pid, ms: Math.round(r.ms) }, 'libphos did not answer the shed request; CRIU dumps the driver copy whole');
      } catch (err) {
        p.log.warn({ pid, err: (err as Error).message }, 'shed request failed; CRIU dumps the driver copy whole');
      }
    },
  }, {
    name: 'criu-dump',
    run: async () => {
      report.phase('criu-dump');
      moveTo(p.rec, 'dumping', 'criu dump');
      // A pre-dump's CPU image goes to the stage (fast memory) while the app is frozen, and moves after the thaw.
      if (pre && d.o.stageDir && !req.ship) {
        mkdirSync(d.o.stageDir, { recursive: true, mode: 0o700 });
        c.stage = mkdtempSync(join(d.o.stageDir, `pre-dump-${pid}-`));
      }
      const dir = c.stage ?? p.img.criuDir;
      req.onCriuStart?.(dir);
      const r = await criuDump({ pid, dir, leaveRunning: pre, leaveStopped: !pre, bin: d.o.criu ?? undefined });
      c.criuMs = r.ms;
      c.stopped = !pre;
    },
    undo: async () => { if (c.stopped) { process.kill(pid, 'SIGCONT'); c.stopped = false; } },
  });
  if (pre) {
    steps.push({
      name: 'resume',
      run: async () => {
        report.phase('driver-restore');
        moveTo(p.rec, 'thawing', 'pre-dump: driver restore, thaw');
        await pccl.driverCheckpoint('restore', pid);
        report.phase('unlock');
        await pccl.driverCheckpoint('unlock', pid);
        report.phase('thaw');
        await thaw();
        c.released = true;
        c.releasedAt = performance.now();
        moveTo(p.rec, 'running', 'pre-dump: thawed');
      },
    });
  }
  // Off the stall for a pre-dump (the app runs again); a dump's process stays stopped until the seal anyway.
  // A migration ships the image as CRIU writes it, so its image is not rewritten.
  if (d.o.trimZeroPages && !req.ship) steps.push(trimStep<KeeperCtx>(report, p.log, pid, () => c.stage ?? p.img.criuDir));
  if (pre && d.o.stageDir && !req.ship) {
    steps.push({
      name: 'move-criu',
      run: async () => {
        report.phase('move-criu');
        await cp(c.stage!, p.img.criuDir, { recursive: true });
        rmSync(c.stage!, { recursive: true, force: true });
        c.stage = null;
      },
    });
  }
  steps.push(...faultStep<KeeperCtx>('agent-before-seal'), {
    name: 'write-gpu',
    run: async () => {
      // pre-dump: the spare copies are the consistent point; dump: the kept memory itself (the app is stopped and frozen).
      if (req.ship) {
        report.phase('write-gpu');
        c.write = { chunks: await req.ship(p.allocs, p.img), written: 0, fromParent: 0, bytesWritten: 0 };
        return;
      }
      const src = pre ? p.allocs.map((a) => ({ ...a, region: c.spares.find((s) => s.id === a.id)!.region })) : p.allocs;
      c.write = await writeGpuChunks(p.img, src, d.o.chunkSize, p.parent, d.o.fsync, (x) => report.phase('write-gpu', x.bytesDone, x.bytesTotal));
    },
  }, {
    name: 'seal',
    run: async () => {
      report.phase('seal');
      writeManifest(p.img, manifestOf(d, req, p.rec, p.version, p.allocs, c.write.chunks, p.parent, 'keeper', null, p.img, p.gpus), d.o.fsync);
      if (c.stopped) {
        process.kill(pid, 'SIGKILL');
        c.stopped = false;
        c.released = true;
        c.releasedAt = performance.now();
        unhide();
        moveTo(p.rec, 'dumped', 'image sealed; process ended');
        // Restored here later: keep its pid free of other forks. Awaited, so the hold's fork (it aims the
        // kernel's pid cursor) is done before the caller hears back and forks its next command (a restore
        // CLI forked meanwhile once took the pid itself, and then waited on itself).
        if (!req.ship) await d.registry.holdWhenGone(pid);
      }
    },
  });
  await runSteps(`${req.kind} (keeper)`, steps, c, {
    log: p.log,
    onStep: (r) => report.step(r),
    finish: async (_c, err) => {
      if (c.stage) rmSync(c.stage, { recursive: true, force: true });
      for (const s of c.spares) await pccl.keeperRelease(s.region).catch(() => undefined);
      unhide();
      if (err) { removeImageDir(p.img); if (['thawing', 'freezing'].includes(p.rec.machine.state)) moveTo(p.rec, 'running', 'rollback complete'); }
      if (!err && !pre && !req.ship) await d.keeper.releaseAll(pid);
    },
  });
  report.phase('done');
  return {
    dir: p.img.dir, kind: req.kind, path: 'keeper', safeReason: null, chunks: c.write.chunks.length, chunksWritten: c.write.written,
    chunksFromParent: c.write.fromParent, bytesWritten: c.write.bytesWritten, stallMs: c.releasedAt - c.lockedAt, criuMs: c.criuMs, totalMs: performance.now() - p.t0,
  };
}

/** Leaves the zero pages of private anonymous memory out of the CRIU image in dir() (criu-zero.ts); a failure keeps it whole. */
function trimStep<C>(report: Reporter, log: Logger, pid: number, dir: () => string): Step<C> {
  return {
    name: 'trim-criu',
    run: async () => {
      report.phase('trim-criu');
      try {
        const t = await trimZeroPages(dir());
        if (t.skipped) log.info({ pid, reason: t.skipped }, 'CRIU image kept whole');
        else log.info({ pid, pages: t.pagesBefore, zeroPagesLeftOut: t.pagesBefore - t.pagesAfter }, t.pagesAfter < t.pagesBefore ? 'CRIU image: zero pages left out' : 'CRIU image: no zero pages to leave out');
      } catch (err) {
        // Failed while compacting: the image is not whole, so the checkpoint fails (and removes it).
        if (err instanceof ImageRewriteError) throw new PhosError('IMAGE_CORRUPT', err.message);
        log.warn({ pid, err }, 'CRIU image kept whole: could not read it for zero pages');
      }
    },
  };
}

function manifestOf(d: CheckpointDeps, req: CheckpointRequest, rec: ProcessRecord, version: string, allocs: KeptAllocation[], chunks: Manifest['chunks'],
  parent: { dir: string } | null, path: 'keeper' | 'safe', safeReason: string | null, img: ImageDir, gpus: string[] | undefined): ImageManifest {
  return {
    formatVersion: MANIFEST_VERSION, createdAt: new Date().toISOString(), kind: req.kind,
    source: { host: hostname(), node: d.o.node, pid: req.pid, job: rec.job },
    gpu: { model: 'unknown', uuid: 'unknown', driverVersion: 0, simulated: d.o.libcuda !== null && /cudasim/.test(d.o.libcuda) },
    vaRegion: { base: rec.vaBase, size: d.o.vaSize }, chunkSize: d.o.chunkSize,
    allocations: allocs.map((a) => ({ id: a.id, va: a.va, size: a.size, ...(a.device ? { device: a.device } : {}) })),
    ...(gpus?.length ? { gpus } : {}),
    chunks, criu: { version, dir: 'criu' }, parent: parent ? parent.dir : null, sealed: true,
    agent: { path, safeReason, argv: rec.argv, logPath: rec.logPath, criuFiles: criuFileSizes(img.criuDir) },
  };
}

export async function checkpointProcess(d: CheckpointDeps, req: CheckpointRequest, report: Reporter): Promise<CheckpointResult> {
  const t0 = performance.now();
  const rec = d.registry.managed(req.pid);
  if (rec.machine.state !== 'running') throw new PhosError('ILLEGAL_STATE', `pid ${req.pid} is ${rec.machine.state}; a ${req.kind} needs it running`);
  const log = d.log.child({ pid: req.pid, op: req.kind });
  report.phase('prepare');
  const version = await criuVersion({ bin: d.o.criu ?? undefined });
  const parent = req.parent ? readManifest(req.parent) : null;
  const linked = d.link.linked(req.pid);
  const allocs = d.keeper.allocations(req.pid);
  // The process's GPUs (ordinal -> UUID) as its last hello or thaw said: a freeze closes the link before the seal.
  const gpus = d.link.lastGpus(req.pid);
  let img = createImageDir(req.dir);
  try {
    checkSpace(img.dir, (statusBytes(req.pid, 'VmRSS') ?? 0) + d.keeper.bytes(req.pid) + SPACE_SLACK);
  } catch (err) {
    removeImageDir(img);
    throw err;
  }
  let safeReason = await keeperPathRefusal(d, req.pid, linked, allocs.length);
  if (req.ship && (safeReason !== null || req.kind !== 'dump')) {
    removeImageDir(img);
    throw new PhosError('ILLEGAL_STATE', `pid ${req.pid} cannot be migrated: ${safeReason ?? 'a cutover is a dump'}; live migration needs the keeper path`, { remedy: 'run the process with libphos (phos run) and keep keeperPath on in the agent config', details: { pid: req.pid } });
  }
  if (safeReason === null) {
    try {
      return await keeperCheckpoint(d, req, report, { rec, img, parent, version, allocs, gpus, t0, log });
    } catch (err) {
      removeImageDir(img);
      // An older libphos answers freeze with "not implemented" and nothing changed: take the safe path.
      if (!(err instanceof PhosError && err.code === 'ILLEGAL_STATE' && /not implemented/.test(err.message))) throw err;
      safeReason = 'libphos does not implement freeze';
      log.warn({ err }, 'keeper path unavailable; taking the safe path');
      img = createImageDir(req.dir);
    }
  }
  if (req.kind === 'dump' && allocs.length > 0) {
    // libphos serves device memory from POSIX-fd shareable slabs. The driver checkpoint copies them, but
    // driver 580 does not restore shareable memory: on an H200, cuCheckpointProcessRestore answered
    // CUDA_ERROR_NOT_SUPPORTED for every such safe-path image. A dump ends the process, so it would be lost.
    removeImageDir(img);
    throw new PhosError('ILLEGAL_STATE', `pid ${req.pid} cannot be dumped on the safe path (${safeReason}): its ${allocs.length} libphos allocations are shareable device memory, which the NVIDIA driver does not restore; the process keeps running`, {
      remedy: 'take a pre-dump instead (the process keeps running), or remove what keeps the keeper path off (the reason above)',
      details: { pid: req.pid, safeReason, allocations: allocs.length },
    });
  }
  const ctx: Ctx = { rec, img, parent, criuVersion: version, chunks: [], written: 0, fromParent: 0, bytesWritten: 0, lockedAt: 0, releasedAt: 0, criuMs: 0, stopped: false };
  const pid = req.pid;
  const leaveRunning = req.kind === 'pre-dump';

  const steps: Step<Ctx>[] = [
    {
      name: 'lock',
      run: async (c) => {
        report.phase('lock');
        moveTo(c.rec, 'freezing', `${req.kind}: driver lock`);
        c.lockedAt = performance.now();
        await pccl.driverCheckpoint('lock', pid);
      },
      undo: async (c) => {
        await pccl.driverCheckpoint('unlock', pid);
        moveTo(c.rec, c.rec.machine.state === 'freezing' ? 'running' : 'running', 'rollback: unlocked');
      },
    },
  ];
  if (allocs.length > 0) {
    // While the driver holds the lock no CUDA work runs, so the keeper's references read a consistent point.
    steps.push({
      name: 'write-gpu',
      run: async (c) => {
        const r = await writeGpuChunks(c.img, allocs, d.o.chunkSize, c.parent, d.o.fsync, (p) => report.phase('write-gpu', p.bytesDone, p.bytesTotal));
        Object.assign(c, { chunks: r.chunks, written: r.written, fromParent: r.fromParent, bytesWritten: r.bytesWritten });
        log.info({ chunks: r.chunks.length, written: r.written, fromParent: r.fromParent, bytes: r.bytesWritten }, 'gpu chunks written');
      },
    });
  }
  steps.push({
    name: 'checkpoint',
    run: async (c) => {
      report.phase('checkpoint');
      await pccl.driverCheckpoint('checkpoint', pid);
      moveTo(c.rec, 'frozen', 'driver checkpointed');
    },
    undo: async (c) => {
      moveTo(c.rec, 'thawing', 'rollback: driver restore');
      await pccl.driverCheckpoint('restore', pid);
    },
  });
  if (linked) {
    // CRIU cannot dump a socket connected to the agent: close the link and wait until libphos has
    // closed its end (it carries on without the agent; no undo is possible or needed).
    steps.push({
      name: 'unlink',
      run: async () => {
        const before = socketInodes(pid);
        d.link.close(pid);
        const deadline = Date.now() + 3000;
        for (;;) {
          const now = socketInodes(pid);
          if ([...before].some((s) => !now.has(s)) || before.size === 0) break;
          if (Date.now() > deadline) throw new PhosError('TIMEOUT', `pid ${pid}: libphos did not close its agent socket within 3 s`);
          await new Promise((r) => setTimeout(r, 10));
        }
      },
    });
  }
  steps.push({
    name: 'criu-dump',
    run: async (c) => {
      report.phase('criu-dump');
      moveTo(c.rec, 'dumping', 'criu dump');
      // dump: --leave-stopped, so the process is killed only after the image is sealed (a failed seal resumes it).
      const r = await criuDump({ pid, dir: c.img.criuDir, leaveRunning, leaveStopped: !leaveRunning, bin: d.o.criu ?? undefined });
      c.criuMs = r.ms;
      c.stopped = !leaveRunning;
    },
    undo: async (c) => {
      if (c.stopped) { process.kill(pid, 'SIGCONT'); c.stopped = false; }
    },
  });
  if (leaveRunning) {
    steps.push({
      name: 'driver-restore',
      run: async (c) => {
        report.phase('driver-restore');
        moveTo(c.rec, 'thawing', 'pre-dump: driver restore');
        await pccl.driverCheckpoint('restore', pid);
      },
    }, {
      name: 'unlock',
      run: async (c) => {
        report.phase('unlock');
        await pccl.driverCheckpoint('unlock', pid);
        c.releasedAt = performance.now();
        moveTo(c.rec, 'running', 'pre-dump: unlocked');
      },
    });
  }
  // The safe path's image holds the GPU state as host memory too: its zero pages go the same way.
  if (d.o.trimZeroPages && !req.ship) steps.push(trimStep<Ctx>(report, d.log, pid, () => ctx.img.criuDir));
  steps.push(...faultStep<Ctx>('agent-before-seal'), {
    name: 'seal',
    run: async (c) => {
      report.phase('seal');
      const m = manifestOf(d, req, c.rec, c.criuVersion, allocs, c.chunks, c.parent, 'safe', safeReason, c.img, gpus);
      writeManifest(c.img, m, d.o.fsync);
      if (c.stopped) {
        process.kill(pid, 'SIGKILL');
        c.stopped = false;
        c.releasedAt = performance.now();
        moveTo(c.rec, 'dumped', 'image sealed; process ended');
        await d.registry.holdWhenGone(pid);  // before the reply: see the keeper path's seal
      }
    },
  });

  await runSteps(req.kind, steps, ctx, {
    log,
    onStep: (r) => report.step(r),
    finish: async (c, err) => {
      if (err) {
        removeImageDir(c.img);
        if (['thawing', 'freezing'].includes(c.rec.machine.state)) moveTo(c.rec, 'running', 'rollback complete');
        return;
      }
      // The driver's checkpoint/restore cycle gives the app new physical memory: the keeper's references
      // now alias nothing the app uses (and libphos is unlinked), so they go. A dump frees them once sealed.
      await d.keeper.releaseAll(pid);
    },
  });
  report.phase('done');
  const totalMs = performance.now() - t0;
  return {
    dir: img.dir, kind: req.kind, path: 'safe', safeReason: `${safeReason} (safe path)`, chunks: ctx.chunks.length, chunksWritten: ctx.written, chunksFromParent: ctx.fromParent,
    bytesWritten: ctx.bytesWritten, stallMs: (ctx.releasedAt || performance.now()) - ctx.lockedAt, criuMs: ctx.criuMs, totalMs,
  };
}
