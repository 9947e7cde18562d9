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
  await verifyGpuChunks(dir, m, (p) => report.phase('verify', p.bytesDone, p.bytesTotal));
  if (m.agent.path !== 'safe') {
    throw new PhosError('ILLEGAL_STATE', `${dir} holds a keeper-path image; this agent restores safe-path images only`, { remedy: 'restore it with an agent whose libphos supports thaw' });
  }
  const pid = m.source.pid;
  const log = d.log.child({ pid, op: 'restore' });
  // The pid must be free before anything runs: a clash is refused here, never half-way.
  const rec = d.registry.adoptRestoring({ pid, job: m.source.job, argv: m.agent.argv, logPath: m.agent.logPath, restoredFrom: dir });
  const ctx: Ctx = { rec, pid };
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
        c.rec!.machine.transition('running', 'restored');
        d.registry.watch(pid);
      },
    },
  ];
  await runSteps('restore', steps, ctx, {
    log,
    onStep: (r) => report.step(r),
    finish: async (c, err) => {
      if (!err) return;
      if (c.rec && c.rec.machine.can('failed')) c.rec.machine.transition('failed', err.message);
      else d.registry.drop(pid);
    },
  });
  report.phase('done');
  return { info: d.registry.info(rec, d.link.linked(pid), d.keeper.allocations(pid).length, d.keeper.bytes(pid)), ms: performance.now() - t0 };
}
