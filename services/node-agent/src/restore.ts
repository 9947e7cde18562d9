// restore of an image on this node, as a step list with run/undo: everything that can be checked is
// checked before CRIU makes a process (manifest, CRIU file sizes, every gpu/ chunk's hash, the pid is
// free), then CRIU restore, driver restore + unlock. A failure after CRIU kills the half-restored process.
import { join } from 'node:path';
import type { Logger } from '../../../common/src/index.ts';
import * as pccl from '../../../native/pccl/pccl.ts';
import { PhosError, type ProcessInfo } from '../../../proto/src/index.ts';
import type { CompiledAgentOptions } from './agent-options.ts';
import type { Reporter } from './checkpoint.ts';
import { criuRestore, criuVersion } from './criu.ts';
import { readManifest, verifyCriuFiles, verifyGpuChunks } from './image.ts';
import type { Keeper } from './keeper.ts';
import type { LibphosLink } from './libphos-link.ts';
import type { ProcessRecord, ProcessRegistry } from './process-registry.ts';
import { runSteps, type Step } from './step-runner.ts';
import { thawProcess } from './thaw.ts';
import type { ImageManifest } from './image.ts';
import type { KeptAllocation } from './keeper.ts';

async function releaseAll(list: KeptAllocation[]): Promise<void> {
  for (const a of list) await pccl.keeperRelease(a.region).catch(() => undefined);
}

/** New keeper memory for every allocation, filled from its chunk files (size and hash checked natively). */
async function fillFresh(dir: string, m: ImageManifest, report: Reporter): Promise<KeptAllocation[]> {
  const out: KeptAllocation[] = [];
  const bytesTotal = m.allocations.reduce((s, a) => s + a.size, 0);
  let bytesDone = 0;
  try {
    for (const a of m.allocations) {
      const r = await pccl.keeperSpare(a.size);
      out.push({ id: a.id, va: a.va, size: a.size, kind: a.va === 0 ? 'app' : 'slab', region: r.id });
      const items = m.chunks.filter((c) => c.alloc === a.id).map((c) => ({
        offset: c.index * m.chunkSize, length: Math.min(m.chunkSize, a.size - c.index * m.chunkSize), path: join(dir, c.file), hash: c.hash, c,
      }));
      try {
        await pccl.readChunks({ dst: r.id, items: items.map(({ offset, length, path, hash }) => ({ offset, length, path, hash })) });
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
}

interface Ctx { rec: ProcessRecord | null; pid: number }

export async function restoreImage(d: RestoreDeps, dirArg: string, report: Reporter): Promise<{ info: ProcessInfo; ms: number }> {
  const t0 = performance.now();
  report.phase('verify');
  const { dir, manifest: m } = readManifest(dirArg);
  await criuVersion({ bin: d.o.criu ?? undefined });
  verifyCriuFiles(dir, m);
  const keeperPath = m.agent.path === 'keeper';
  // Safe path: the CRIU image holds the GPU state; the chunks are only checked. Keeper path: fresh device
  // memory per allocation is filled from the chunks (each verified) before any process exists.
  let fresh: KeptAllocation[] = [];
  if (!keeperPath) await verifyGpuChunks(dir, m, (p) => report.phase('verify', p.bytesDone, p.bytesTotal));
  else fresh = await fillFresh(dir, m, report);
  const pid = m.source.pid;
  const log = d.log.child({ pid, op: 'restore' });
  // The pid must be free before anything runs: a clash is refused here, never half-way.
  let rec: ProcessRecord;
  try {
    rec = d.registry.adoptRestoring({ pid, job: m.source.job, argv: m.agent.argv, logPath: m.agent.logPath, restoredFrom: dir });
  } catch (err) {
    await releaseAll(fresh);
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
        c.rec!.machine.transition('thawing', 'criu restored; driver restore');
        await pccl.driverCheckpoint('restore', pid);
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
        await thawProcess(d.link, pid, fresh, hello);
        d.keeper.adopt(pid, fresh);
        fresh = [];
        c.rec!.machine.transition('running', 'restored and thawed');
        d.registry.watch(pid);
      },
    });
  }
  await runSteps('restore', steps, ctx, {
    log,
    onStep: (r) => report.step(r),
    finish: async (c, err) => {
      await releaseAll(fresh);
      if (!err) return;
      if (c.rec && c.rec.machine.can('failed')) c.rec.machine.transition('failed', err.message);
      else d.registry.drop(pid);
    },
  });
  report.phase('done');
  return { info: d.registry.info(rec, d.link.linked(pid), d.keeper.allocations(pid).length, d.keeper.bytes(pid)), ms: performance.now() - t0 };
}
