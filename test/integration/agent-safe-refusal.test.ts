// A dump on the safe path of a process whose device memory libphos serves from shareable slabs would not
// restore on NVIDIA's driver (seen on an H200: cuCheckpointProcessRestore -> CUDA_ERROR_NOT_SUPPORTED), and
// a dump ends the process. The agent refuses it up front; the process keeps running untouched.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertContinuous, referenceChecksum, waitForLog, workloadPath } from '../helpers/workload.ts';
import { startAgent, type AgentHandle } from './agent-harness.ts';

const ARGS = ['--mib', '32', '--steps', '250', '--step-ms', '20'];
let agent: AgentHandle;
let cfg: string;

beforeEach(async () => {
  cfg = join(process.env.TMPDIR ?? '/tmp', `phos-keeper-off-${process.pid}.yaml`);
  writeFileSync(cfg, 'keeperPath: false\n');
  agent = await startAgent('24000-24499', { PHOS_AGENT_CONFIG: cfg });
});
afterEach(async () => { await agent.stop(); });

describe('safe-path dump of a libphos process', () => {
  it('is refused before anything is stopped, and the process runs on to its reference checksum', async () => {
    const expected = referenceChecksum('counter', ARGS);
    const p = await agent.run([workloadPath('counter'), ...ARGS], 'counter');
    await waitForLog(p.logPath, (l) => l.steps.length >= 5);
    const img = join(agent.dir, 'img');
    const r = await agent.phos(['dump', '--pid', String(p.pid), '--dir', img]);
    expect(r.code).toBe(8);
    expect(r.stderr).toMatch(/error ILLEGAL_STATE: pid \d+ cannot be dumped on the safe path \(the keeper path is switched off/);
    expect(r.stderr).toMatch(/remedy: take a pre-dump instead/);
    expect(existsSync(img)).toBe(false);
    const final = await waitForLog(p.logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 60_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
  });
});
