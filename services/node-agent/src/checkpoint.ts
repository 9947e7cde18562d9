// pre-dump and dump of a managed process, as step lists with run/undo (step-runner.ts). Which path:
// `keeper` needs libphos connected, every device byte explained, and libphos's freeze op; otherwise the
// `safe` path: driver lock (+ gpu/ chunks from the keeper's references while locked), driver checkpoint,
// CRIU dump (GPU state in the CRIU image), driver restore + unlock. Until the app is released, any
// failure undoes what ran and the app continues; a partial image is removed.
import { readdirSync, readlinkSync, readFileSync, statfsSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from '../../../common/src/index.ts';
import * as pccl from '../../../native/pccl/pccl.ts';
import { MANIFEST_VERSION, PhosError, type CheckpointResult, type ControlPhase, type Manifest } from '../../../proto/src/index.ts';
import type { CompiledAgentOptions } from './agent-options.ts';
import { criuDump, criuVersion } from './criu.ts';
import { createImageDir, criuFileSizes, readManifest, removeImageDir, writeGpuChunks, writeManifest, type ImageDir, type ImageManifest } from './image.ts';
import type { Keeper } from './keeper.ts';
import type { LibphosLink } from './libphos-link.ts';
import type { ProcessRecord, ProcessRegistry } from './process-registry.ts';
import { runSteps, type Step, type StepReport } from './step-runner.ts';

export interface CheckpointDeps {
  o: CompiledAgentOptions;
  registry: ProcessRegistry;
  keeper: Keeper;
  link: LibphosLink;
  log: Logger;
}

export interface CheckpointRequest { pid: number; dir: string; parent?: string | null; kind: 'pre-dump' | 'dump' }

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

/** Bytes beyond the process's resident memory and kept device memory that the image may need. */
const SPACE_SLACK = 8 << 20;

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

function rssBytes(pid: number): number {
  try { return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024; } catch { return 0; }
}

/** DISK_FULL before anything is touched when the image cannot fit (the estimate is what CRIU and gpu/ will write at most). */
function checkSpace(dir: string, need: number): void {
  const st = statfsSync(dir);
  const free = st.bavail * st.bsize;
  if (free < need) {
    throw new PhosError('DISK_FULL', `${dir} has ${free} bytes free; the image needs up to ${need} (process memory + kept device memory)`, { details: { dir, free, need } });
  }
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
  const img = createImageDir(req.dir);
  try {
    checkSpace(img.dir, rssBytes(req.pid) + d.keeper.bytes(req.pid) + SPACE_SLACK);
  } catch (err) {
    removeImageDir(img);
    throw err;
  }
  // The keeper path (freeze with spare memory, thaw through the keeper) needs libphos's freeze op; until
  // libphos answers it, every image takes the safe path and says why.
  const safeReason = linked ? 'libphos freeze is not available in this build (safe path)' : 'libphos is not connected (safe path)';
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
  steps.push({
    name: 'seal',
    run: async (c) => {
      report.phase('seal');
      const m: ImageManifest = {
        formatVersion: MANIFEST_VERSION, createdAt: new Date().toISOString(), kind: req.kind,
        source: { host: hostname(), node: d.o.node, pid, job: c.rec.job },
        gpu: { model: 'unknown', uuid: 'unknown', driverVersion: 0, simulated: d.o.libcuda !== null && /cudasim/.test(d.o.libcuda) },
        vaRegion: { base: c.rec.vaBase, size: d.o.vaSize }, chunkSize: d.o.chunkSize,
        allocations: allocs.map((a) => ({ id: a.id, va: a.va, size: a.size })),
        chunks: c.chunks, criu: { version: c.criuVersion, dir: 'criu' },
        parent: c.parent ? c.parent.dir : null, sealed: true,
        agent: { path: 'safe', safeReason, argv: c.rec.argv, logPath: c.rec.logPath, criuFiles: criuFileSizes(c.img.criuDir) },
      };
      writeManifest(c.img, m, d.o.fsync);
      if (c.stopped) {
        process.kill(pid, 'SIGKILL');
        c.stopped = false;
        c.releasedAt = performance.now();
        moveTo(c.rec, 'dumped', 'image sealed; process ended');
      }
    },
  });

  await runSteps(req.kind, steps, ctx, {
    log,
    onStep: (r) => report.step(r),
    finish: async (c, err) => {
      if (err) {
        removeImageDir(c.img);
        if (c.rec.machine.state === 'thawing') moveTo(c.rec, 'running', 'rollback complete');
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
    dir: img.dir, kind: req.kind, path: 'safe', safeReason, chunks: ctx.chunks.length, chunksWritten: ctx.written, chunksFromParent: ctx.fromParent,
    bytesWritten: ctx.bytesWritten, stallMs: (ctx.releasedAt || performance.now()) - ctx.lockedAt, criuMs: ctx.criuMs, totalMs,
  };
}
