// A process using two GPUs (cudasim with PHOS_SIM_GPUS=2, in the agent's and the app's environment):
// libphos serves both devices from its region (per-device slabs), the keeper holds each slab on its own
// GPU, and a pre-dump, a dump and a restore go through the keeper path bit-exact, as for one GPU.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertContinuous, parseWorkloadLog, referenceChecksum, waitForLog, workloadPath } from '../helpers/workload.ts';
import { cudasimEnv, NATIVE_BUILD } from '../helpers/paths.ts';
import { appGone, startAgent, type AgentHandle } from './agent-harness.ts';

// The harness gives the agent and every app this process's environment (cudasimEnv).
process.env.PHOS_SIM_GPUS = '2';

// Long enough (≈ 8 s) that the process still runs after the CLI calls of each test on a loaded machine.
const ARGS = ['--devices', '2', '--mib', '32', '--steps', '400', '--step-ms', '20'];
const ONE_GPU = ['--mib', '32', '--steps', '400', '--step-ms', '20'];

/** The node's GPU UUIDs by ordinal, as gpu-probe (phos doctor's probe) sees them. */
function nodeGpus(): string[] {
  const out = execFileSync(join(NATIVE_BUILD, 'tools', 'gpu-probe'), { env: cudasimEnv(), encoding: 'utf8' });
  return (JSON.parse(out) as { devices: { uuid: string }[] }).devices.map((d) => d.uuid);
}

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
    // The keeper imported each slab on its own GPU.
    const ps = await agent.phosJson<{ processes: { pid: number; gpus?: string[]; keptBytesByGpu?: number[] }[] }>(['ps']);
    const me = ps.last.processes.find((x) => x.pid === pid)!;
    expect(me.gpus).toHaveLength(2);
    expect(me.keptBytesByGpu?.[0]).toBeGreaterThan(0);
    expect(me.keptBytesByGpu?.[1]).toBeGreaterThan(0);
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
    expect(await appGone(pid)).toBe(true);
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

  it('restore --gpu-map 0=1: a one-GPU counter dumped on GPU 0 continues bit-exact with its memory on GPU 1', async () => {
    const expected = referenceChecksum('counter', ONE_GPU);
    const gpus = nodeGpus();
    expect(gpus).toHaveLength(2);
    const { pid, logPath } = await start(ONE_GPU);
    const img = join(agent.dir, 'img');
    const d = await agent.phosJson(['dump', '--pid', String(pid), '--dir', img]);
    expect(d.code, `${JSON.stringify(d.last)} ${d.stderr}`).toBe(0);
    const m = manifest(img);
    expect(m.gpus?.[0]).toBe(gpus[0]);
    expect(m.allocations.every((a) => (a.device ?? 0) === 0)).toBe(true);

    // A map naming a GPU that does not exist is refused before anything is touched.
    const bad = await agent.phosJson<{ ok: false; error: { code: string; message: string } }>(['restore', '--dir', img, '--gpu-map', '0=5']);
    expect(bad.code).toBe(2);
    expect(bad.stderr + JSON.stringify(bad.last)).toMatch(/no GPU 5/);
    const bad2 = await agent.phosJson(['restore', '--dir', img, '--gpu-map', '3=1']);
    expect(bad2.code).toBe(2);
    expect(bad2.stderr + JSON.stringify(bad2.last)).toMatch(/image has no GPU 3/);
    expect(await appGone(pid)).toBe(true);

    const r = await agent.phosJson<{ result: { pid: number } }>(['restore', '--dir', img, '--gpu-map', '0=1']);
    expect(r.code, `${JSON.stringify(r.last)} ${r.stderr}\n${agent.agentLog().slice(-3000)}`).toBe(0);
    expect(r.last.result.pid).toBe(pid);
    const atRestore = parseWorkloadLog(readFileSync(logPath, 'utf8')).steps.length;
    await waitForLog(logPath, (l) => l.steps.length >= atRestore + 3 || l.checksum !== null);
    // Where its memory is now: a pre-dump of the restored process records device ordinal 0 as GPU 1's UUID
    // (the driver restore re-pointed the ordinal; the keeper's copy of every allocation was placed there).
    const pre = join(agent.dir, 'after');
    const p = await agent.phosJson(['pre-dump', '--pid', String(pid), '--dir', pre]);
    expect(p.code, `${JSON.stringify(p.last)} ${p.stderr}`).toBe(0);
    expect(manifest(pre).gpus?.[0]).toBe(gpus[1]);
    expect(manifest(pre).gpus?.[1]).toBe(gpus[0]); // the GPU the map did not name took the one left over
    const final = await waitForLog(logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 60_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
  });

  // Longer runs than above: the process must still be running after three CLI calls, the move and a pre-dump.
  const LONG = (args: readonly string[]) => [...args.slice(0, -4), '--steps', '600', '--step-ms', '20'];
  it.each([['one-GPU', LONG(ONE_GPU)], ['two-GPU', LONG(ARGS)]] as const)('migrate --to-gpu 1: a %s counter moves GPU 0 -> GPU 1 bit-exact, downtime reported', async (_name, args) => {
    const expected = referenceChecksum('counter', [...args]);
    const gpus = nodeGpus();
    const { pid, logPath } = await start([...args]);
    // A GPU this node does not have: refused before anything stops.
    const bad = await agent.phos(['migrate', '--pid', String(pid), '--to-gpu', '7']);
    expect(bad.code, bad.stderr).toBe(2);
    expect(bad.stderr).toMatch(/no GPU 7/);
    const both = await agent.phos(['migrate', '--pid', String(pid), '--to-gpu', '1', '--to', 'elsewhere']);
    expect(both.code).toBe(2);

    const r = await agent.phosJson<{ ok: boolean; result: { fromGpu: number; toGpu: number; bytes: number; bytesInDowntime: number; downtimeMs: number; copyMs: number } }>(['migrate', '--pid', String(pid), '--to-gpu', '1']);
    expect(r.code, `${JSON.stringify(r.last)} ${r.stderr}\n${agent.agentLog().slice(-3000)}`).toBe(0);
    expect(r.last.result).toMatchObject({ fromGpu: 0, toGpu: 1 });
    expect(r.last.result.bytes).toBeGreaterThan(32 << 20);
    expect(r.last.result.downtimeMs).toBeGreaterThan(0);
    expect(r.last.result.copyMs).toBeLessThan(r.last.result.downtimeMs);
    // Copied while it ran; only what it wrote after the last hash round (the hot buffer's chunks) while frozen.
    expect(r.last.result.bytesInDowntime).toBeLessThan(r.last.result.bytes / 4);
    expect(existsSync(`/proc/${pid}`)).toBe(true);
    // phos ps: device 0 is GPU 1 now, and the keeper holds its memory there (two GPUs: all of it moved,
    // swapped with the other device's).
    const ps = await agent.phosJson<{ processes: { pid: number; gpus?: string[]; keptBytesByGpu?: number[] }[] }>(['ps']);
    const me = ps.last.processes.find((x) => x.pid === pid)!;
    expect(me.gpus?.[0]).toBe(gpus[1]);
    expect(me.keptBytesByGpu?.[1]).toBeGreaterThan(32 << 20);
    if (args.includes('--devices')) expect(me.keptBytesByGpu?.[0]).toBeGreaterThan(0);
    else expect(me.keptBytesByGpu?.[0] ?? 0).toBe(0);
    const atMove = parseWorkloadLog(readFileSync(logPath, 'utf8')).steps.length;
    await waitForLog(logPath, (l) => l.steps.length >= atMove + 3 || l.checksum !== null);
    const pre = join(agent.dir, 'after');
    const p = await agent.phosJson(['pre-dump', '--pid', String(pid), '--dir', pre]);
    expect(p.code, `${JSON.stringify(p.last)} ${p.stderr}\n${readFileSync(logPath, 'utf8').slice(-1500)}`).toBe(0);
    expect(manifest(pre).gpus).toEqual([gpus[1], gpus[0]]);
    const final = await waitForLog(logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 60_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
  });

  it('migrate --to-gpu 1 that cannot get memory on GPU 1 rolls back: the app runs on, on GPU 0, bit-exact', async () => {
    // An agent whose own device memory budget (cudasim's, per process) cannot hold the copy on GPU 1; the
    // keeper's imports of the app's memory do not count against it, its spare allocations do.
    await agent.stop();
    agent = await startAgent('24000-24999', { PHOS_SIM_GPUS: '2', PHOS_SIM_MEM: String(48 << 20) });
    const args = LONG(ONE_GPU);
    const expected = referenceChecksum('counter', args);
    const gpus = nodeGpus();
    const { pid, logPath } = await start(args);
    const r = await agent.phosJson<{ ok: false; error: { code: string; message: string } }>(['migrate', '--pid', String(pid), '--to-gpu', '1']);
    expect(r.code, `${JSON.stringify(r.last)} ${r.stderr}`).toBe(4);
    expect(JSON.stringify(r.last)).toMatch(/OUT_OF_MEMORY/);
    expect(existsSync(`/proc/${pid}`)).toBe(true);
    const ps = await agent.phosJson<{ processes: { pid: number; state: string; gpus?: string[]; keptBytesByGpu?: number[] }[] }>(['ps']);
    const me = ps.last.processes.find((x) => x.pid === pid)!;
    expect(me.state).toBe('running');
    expect(me.gpus?.[0]).toBe(gpus[0]);
    expect(me.keptBytesByGpu?.[1] ?? 0).toBe(0);
    const final = await waitForLog(logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 60_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
  });
});
