// More allocations than one socket packet carries fds for (16): the pre-dump's consistent copy is made
// by the keeper (no fds cross the socket) and the thaw spans several frames, so the keeper path still
// holds — pre-dump keeps the app running and dump + restore continues bit-exact.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { cudasimEnv } from '../helpers/paths.ts';
import { assertContinuous, referenceChecksum, waitForLog, workloadPath } from '../helpers/workload.ts';
import { startAgent, type AgentHandle } from './agent-harness.ts';

// 24 cold buffers of 2 MiB with 2 MiB slabs: one slab each, 25+ allocations in the keeper.
const ARGS = ['--mib', '48', '--buffers', '24', '--steps', '300', '--step-ms', '20'];
let agent: AgentHandle;
beforeEach(async () => { agent = await startAgent('24500-24999'); });
afterEach(async () => { await agent.stop(); });

describe('keeper path with more than 16 allocations', () => {
  it('pre-dumps, dumps and restores a process holding 25 slabs, bit-exact', async () => {
    const expected = referenceChecksum('counter', ARGS);
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(cudasimEnv({ PHOS_SLAB_MIB: '2' }))) if (v !== undefined) env[k] = v;
    const p = await agent.call<{ pid: number; logPath: string; allocations: number }>('run', { argv: [workloadPath('counter'), ...ARGS], job: 'counter', env });
    await waitForLog(p.logPath, (l) => l.steps.length >= 5);
    const ps = await agent.phosJson<{ processes: { pid: number; allocations: number }[] }>(['ps']);
    expect(ps.last.processes.find((x) => x.pid === p.pid)!.allocations).toBeGreaterThan(16);

    const pre = await agent.phosJson<{ result: { path: string } }>(['pre-dump', '--pid', String(p.pid), '--dir', join(agent.dir, 'pre')]);
    expect(pre.code, pre.stderr).toBe(0);
    expect(pre.last.result.path).toBe('keeper');

    const d = await agent.phosJson<{ result: { path: string } }>(['dump', '--pid', String(p.pid), '--dir', join(agent.dir, 'img')]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.last.result.path).toBe('keeper');
    const r = await agent.phosJson<{ result: { pid: number } }>(['restore', '--dir', join(agent.dir, 'img')]);
    expect(r.code, r.stderr).toBe(0);
    const final = await waitForLog(p.logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 90_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
  }, 150_000);
});
