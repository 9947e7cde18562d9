// A process using two GPUs (cudasim with PHOS_SIM_GPUS=2, in the agent's and the app's environment):
// libphos serves both devices from its region (per-device slabs), the keeper holds each slab on its own
// GPU, and a pre-dump, a dump and a restore go through the keeper path bit-exact, as for one GPU.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertContinuous, parseWorkloadLog, referenceChecksum, waitForLog, workloadPath } from '../helpers/workload.ts';
import { startAgent, type AgentHandle } from './agent-harness.ts';

// The harness gives the agent and every app this process's environment (cudasimEnv).
process.env.PHOS_SIM_GPUS = '2';

const ARGS = ['--devices', '2', '--mib', '32', '--steps', '250', '--step-ms', '20'];
interface ImageManifest {
  sealed: boolean; kind: string; agent: { path: string }; gpus?: string[];
  allocations: { id: number; size: number; device?: number }[];
}

let agent: AgentHandle;
beforeEach(async () => { agent = await startAgent('24000-24999', { PHOS_SIM_GPUS: '2' }); });
afterEach(async () => { await agent.stop(); });

async function start(args = ARGS): Promise<{ pid: number; logPath: string }> {
  const p = await agent.run([workloadPath('counter'), ...args], 'counter');
  await waitForLog(p.logPath, (l) => l.steps.length >= 5);
  return p;
}

function manifest(img: string): ImageManifest {
  return JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8')) as ImageManifest;
}

/** Device memory per device ordinal in an image (bytes). */
function bytesByDevice(m: ImageManifest): Record<number, number> {
  const out: Record<number, number> = {};
  for (const a of m.allocations) out[a.device ?? 0] = (out[a.device ?? 0] ?? 0) + a.size;
  return out;
}

describe('two-GPU process through the agent (cudasim, 2 devices)', () => {
  it('pre-dump: keeper path, allocations on both devices, both GPUs recorded; runs on to the reference checksum', async () => {
    const expected = referenceChecksum('counter', ARGS);
    const { pid, logPath } = await start();
    const img = join(agent.dir, 'img');
    const r = await agent.phosJson<{ result: { path: string } }>(['pre-dump', '--pid', String(pid), '--dir', img]);
    expect(r.code, `${JSON.stringify(r.last)} ${r.stderr}\n${agent.agentLog().slice(-3000)}`).toBe(0);
    expect(r.last.result.path).toBe('keeper');
    const m = manifest(img);
    expect(m).toMatchObject({ sealed: true, kind: 'pre-dump', agent: { path: 'keeper' } });
    expect(m.gpus).toHaveLength(2);
    expect(m.gpus![0]).not.toBe(m.gpus![1]);
    const by = bytesByDevice(m);
    expect(by[0]).toBeGreaterThan(0);
    expect(by[1]).toBeGreaterThan(0);
    const final = await waitForLog(logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 60_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
  });

  it('pre-dump, dump, restore: continues from its last step bit-exact on both devices', async () => {
    const expected = referenceChecksum('counter', ARGS);
    const { pid, logPath } = await start();
    const pre = join(agent.dir, 'pre');
    const p = await agent.phosJson(['pre-dump', '--pid', String(pid), '--dir', pre]);
    expect(p.code, `${JSON.stringify(p.last)} ${p.stderr}`).toBe(0);
    const img = join(agent.dir, 'img');
    const d = await agent.phosJson<{ result: { path: string; chunksFromParent: number } }>(['dump', '--pid', String(pid), '--dir', img, '--parent', pre]);
    expect(d.code, `${JSON.stringify(d.last)} ${d.stderr}\n${agent.agentLog().slice(-3000)}`).toBe(0);
    expect(d.last.result.path).toBe('keeper');
    expect(d.last.result.chunksFromParent).toBeGreaterThan(0); // the cold buffers did not change
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    const stepsAtDump = parseWorkloadLog(readFileSync(logPath, 'utf8')).steps.length;
    const by = bytesByDevice(manifest(img));
    expect(by[0]).toBeGreaterThan(0);
    expect(by[1]).toBeGreaterThan(0);

    const r = await agent.phosJson<{ result: { pid: number } }>(['restore', '--dir', img]);
    expect(r.code, `${JSON.stringify(r.last)} ${r.stderr}\n${agent.agentLog().slice(-3000)}`).toBe(0);
    expect(r.last.result.pid).toBe(pid);
    const final = await waitForLog(logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 60_000);
    assertContinuous(final);
    expect(final.steps.length).toBeGreaterThan(stepsAtDump);
    expect(final.checksum).toBe(expected);
  });
});
