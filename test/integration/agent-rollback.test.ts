// Rollback: a checkpoint that fails after the app was frozen (PHOS_FAULT fault points of the agent) undoes
// its steps in reverse — CRIU's stopped task continued, driver restore + unlock, thaw through the keeper —
// and the app finishes with its reference checksum; no partial image is left.
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { assertContinuous, referenceChecksum, waitForLog, workloadPath } from '../helpers/workload.ts';
import { startAgent, type AgentHandle } from './agent-harness.ts';

const ARGS = ['--mib', '16', '--steps', '250', '--step-ms', '20'];
let agent: AgentHandle | null = null;
afterEach(async () => { await agent?.stop(); agent = null; });

describe('checkpoint rollback (keeper path)', () => {
  it.each([
    ['dump', 'agent-before-seal'],
    ['pre-dump', 'agent-after-freeze'],
    ['dump', 'agent-after-checkpoint'],
  ] as const)('%s failing at %s: the app continues bit-exact and no image is left', async (verb, fault) => {
    agent = await startAgent('27000-27999', { PHOS_FAULT: fault });
    const p = await agent.run([workloadPath('counter'), ...ARGS], 'ctr');
    await waitForLog(p.logPath, (l) => l.steps.length >= 5);
    const img = join(agent.dir, 'img');
    const r = await agent.phos([verb, '--pid', String(p.pid), '--dir', img]);
    expect(r.code).toBe(70);
    expect(r.stderr).toMatch(new RegExp(`^error INTERNAL: fault injected at ${fault}`, 'm'));
    expect(existsSync(img)).toBe(false);
    const ps = await agent.phosJson<{ processes: { pid: number; state: string; linked: boolean }[] }>(['ps']);
    expect(ps.last.processes.find((x) => x.pid === p.pid)).toMatchObject({ state: 'running', linked: true });
    const final = await waitForLog(p.logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 30_000);
    assertContinuous(final);
    expect(final.checksum).toBe(referenceChecksum('counter', ARGS));
  });
});
