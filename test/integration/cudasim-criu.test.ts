// CRIU dumps and restores a process running a workload on cudasim, with the driver checkpoint API moving
// its device memory into host memory first (the cuda-checkpoint + CRIU flow), and it continues bit-exact.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { criuDump, criuRestore, launch } from '../../services/node-agent/src/index.ts';
import { CKPT_CTL, cudasimEnv } from '../helpers/paths.ts';
import { scratch } from '../helpers/scratch.ts';
import { assertContinuous, referenceChecksum, waitForLog, workloadPath, WORKLOADS, type Workload } from '../helpers/workload.ts';

interface CtlResult { action: string; ok: boolean; error: string; ms: number; state?: string }

function ckptCtl(action: string, pid: number): Promise<CtlResult[]> {
  return new Promise((resolve) => {
    execFile(CKPT_CTL, ['--timeout-ms', '10000', action, String(pid)], { env: cudasimEnv(), encoding: 'utf8' }, (_err, stdout) => {
      resolve(stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as CtlResult));
    });
  });
}

const ARGS: Record<Workload, string[]> = {
  counter: ['--mib', '32', '--steps', '60', '--step-ms', '25'],
  streams: ['--steps', '60', '--step-ms', '25'],
  'vmm-grow': ['--steps', '60', '--step-ms', '25'],
  'ptr-chase': ['--steps', '60', '--step-ms', '25'],
};

const tracked = scratch();

describe('CRIU on cudasim', () => {
  it.each(WORKLOADS)('%s: driver checkpoint + CRIU dump, kill, CRIU restore + driver restore -> continues bit-exact', async (name) => {
    const dir = tracked.dir(`phos-cr-${name}-`);
    const log = join(dir, 'app.log');
    const args = ARGS[name];
    const expected = referenceChecksum(name, args);
    const app = launch({ argv: [workloadPath(name), ...args], env: cudasimEnv(), logPath: log });
    tracked.pid(app.pid);
    await waitForLog(log, (l) => l.steps.length >= 10);

    const suspend = await ckptCtl('suspend', app.pid);
    expect(suspend.map((r) => [r.action, r.ok, r.error])).toEqual([['lock', true, ''], ['checkpoint', true, '']]);
    expect((await ckptCtl('state', app.pid))[0]).toMatchObject({ ok: true, state: 'checkpointed' });

    await criuDump({ pid: app.pid, dir });
    expect(await app.exited).toBe(137); // criu kills the dumped tree
    const stepsAtDump = (await waitForLog(log, () => true)).steps.length;

    const { pid } = await criuRestore({ dir });
    tracked.pid(pid);
    expect(pid).toBe(app.pid);
    expect((await ckptCtl('state', pid))[0]).toMatchObject({ ok: true, state: 'checkpointed' });
    const resume = await ckptCtl('resume', pid);
    expect(resume.map((r) => [r.action, r.ok, r.error])).toEqual([['restore', true, ''], ['unlock', true, '']]);

    const final = await waitForLog(log, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 60_000);
    assertContinuous(final);
    expect(final.steps.length).toBeGreaterThan(stepsAtDump);
    expect(final.checksum).toBe(expected);
  });
});
