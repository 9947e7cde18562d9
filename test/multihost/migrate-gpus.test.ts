// Cross-node migration onto chosen GPUs (cudasim with two GPUs per host, network-namespace hosts, real
// NATS, coordinator and CRIU): `--gpus 1` puts a one-GPU process on the target's GPU 1; a two-GPU process
// keeps one GPU per device by default and swaps them with `--gpus 1,0`. Each continues bit-exact with its
// memory on the GPUs asked for; a --gpus that cannot work is refused before anything moves.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostsUnavailable } from '../helpers/hosts.ts';
import { NATIVE_BUILD, cudasimEnv } from '../helpers/paths.ts';
import { assertContinuous, referenceChecksum, waitForLog } from '../helpers/workload.ts';
import { processesOn, runOn, startMesh, type Mesh, type MeshNode, type MeshProcess } from './mesh-harness.ts';

process.env.PHOS_SIM_GPUS = '2'; // the references, and every process of the mesh, see two GPUs

// Long enough to still run when the test looks at where its memory went, on a loaded 2-core machine.
const ONE_GPU = ['--mib', '32', '--steps', '900', '--step-ms', '15'];
const TWO_GPUS = ['--devices', '2', ...ONE_GPU];

describe.skipIf(hostsUnavailable() !== null)('phos migrate --gpus between two hosts with two GPUs each (cudasim)', () => {
  let mesh: Mesh;
  let a: MeshNode;
  let b: MeshNode;
  let uuids: string[];

  beforeAll(async () => {
    mesh = await startMesh(['gpus-a', 'gpus-b'], { pidBase: 29000, runDir: '/run/phos-mesh-gpus', env: { PHOS_SIM_GPUS: '2' } });
    [a, b] = mesh.nodes as [MeshNode, MeshNode];
    const out = execFileSync(join(NATIVE_BUILD, 'tools', 'gpu-probe'), { env: { ...cudasimEnv(), PHOS_SIM_GPUS: '2' }, encoding: 'utf8' });
    uuids = (JSON.parse(out) as { devices: { uuid: string }[] }).devices.map((d) => d.uuid);
  }, 120_000);
  afterAll(async () => { await mesh?.stop(); });

  const run = (args: string[]) => runOn(mesh, a, 'counter', args);
  const on = async (node: MeshNode, pid: number) => (await processesOn(mesh, node)).find((p) => p.pid === pid);

  /** Starts a counter on a, migrates it to b with `extra`, and returns where its memory ended up. */
  async function move(args: string[], extra: string[]): Promise<MeshProcess> {
    const expected = referenceChecksum('counter', args);
    const p = await run(args);
    await waitForLog(p.logPath, (l) => l.steps.length >= 20);
    // The coordinator must know how many GPUs it uses before --gpus can be checked against it.
    const devices = args.includes('--devices') ? 2 : 1;
    await expect.poll(async () => (await on(a, p.pid))?.keptBytesByGpu?.filter((x) => x > 0).length, { timeout: 10_000 }).toBe(devices);
    await new Promise((res) => setTimeout(res, 2500)); // one heartbeat: the process record carries its devices
    const r = await mesh.phos(['migrate', '--pid', String(p.pid), '--from', a.name, '--to', b.name, '--nats', mesh.natsUrl, '--json', ...extra]);
    const last = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { phase?: string };
    expect(last.phase, `${r.stderr}\n${b.log().split('\n').filter((l) => /level":[45]0/.test(l)).slice(-10).join('\n')}`).toBe('succeeded');
    const there = await on(b, p.pid);
    expect(there).toBeDefined();
    const final = await waitForLog(p.logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 120_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
    return there!;
  }

  it('--gpus 1: a one-GPU process lands on GPU 1 of the target and continues bit-exact', async () => {
    const p = await move(ONE_GPU, ['--gpus', '1']);
    expect(p.gpus?.[0]).toBe(uuids[1]); // its device 0 (it sees both GPUs; the other one is its device 1)
    expect(p.keptBytesByGpu?.[1]).toBeGreaterThan(32 << 20);
    expect(p.keptBytesByGpu?.[0] ?? 0).toBe(0);
  }, 240_000);

  it('a two-GPU process keeps one GPU per device by default, and swaps them with --gpus 1,0', async () => {
    const same = await move(TWO_GPUS, []);
    expect(same.gpus).toEqual([uuids[0], uuids[1]]);
    expect(same.keptBytesByGpu?.[0]).toBeGreaterThan(0);
    expect(same.keptBytesByGpu?.[1]).toBeGreaterThan(0);
    const swapped = await move(TWO_GPUS, ['--gpus', '1,0']);
    expect(swapped.gpus).toEqual([uuids[1], uuids[0]]);
    expect(swapped.keptBytesByGpu?.[0]).toBeGreaterThan(0);
    expect(swapped.keptBytesByGpu?.[1]).toBeGreaterThan(0);
  }, 400_000);

  it('a --gpus that cannot work is refused before anything moves: the app runs on at the source', async () => {
    const p = await run(TWO_GPUS);
    await waitForLog(p.logPath, (l) => l.steps.length >= 10);
    await new Promise((res) => setTimeout(res, 2500));
    const migrate = (gpus: string) => mesh.phos(['migrate', '--pid', String(p.pid), '--from', a.name, '--to', b.name, '--nats', mesh.natsUrl, '--gpus', gpus]);
    const few = await migrate('1');
    expect(few.code).toBe(2);
    expect(few.stderr).toMatch(/--gpus names 1 GPU; pid \d+ uses 2/);
    const none = await migrate('0,7');
    expect(none.code).toBe(3);
    expect(none.stderr).toMatch(/has no GPU 7/);
    const twice = await migrate('1,1');
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(/names a GPU twice/);
    const garbage = await migrate('one');
    expect(garbage.code).toBe(2);
    expect((await on(a, p.pid))).toBeDefined();
    expect(await on(b, p.pid)).toBeUndefined();
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* it finished */ }
  }, 120_000);
});
