// Live migration between two hosts (network namespaces) on cudasim: phos migrate moves a running counter
// from node-a to node-b, where it continues to the reference checksum without a gap; a cancelled or
// failed migration leaves it running on node-a. Real NATS, coordinator, agents, pccl transport and CRIU.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { hostsUnavailable } from '../helpers/hosts.ts';
import { assertContinuous, parseWorkloadLog, referenceChecksum, waitForLog, workloadPath } from '../helpers/workload.ts';
import { startMesh, type Mesh, type MeshNode } from './mesh-harness.ts';

type State = { id: string; phase: string; downtimeMs: number | null; bytesSent: number; bytesTotal: number; error: { code: string; message: string } | null };

const skip = hostsUnavailable();

describe.skipIf(skip !== null)('phos migrate between two hosts (cudasim)', () => {
  let mesh: Mesh;
  let a: MeshNode;
  let b: MeshNode;

  beforeAll(async () => {
    mesh = await startMesh();
    [a, b] = mesh.nodes as [MeshNode, MeshNode];
  }, 120_000);
  afterAll(async () => { await mesh?.stop(); });

  async function run(node: MeshNode, args: string[]): Promise<{ pid: number; logPath: string }> {
    const r = await mesh.phos(['run', '--json', '--', workloadPath('counter'), ...args], node);
    if (r.code !== 0) throw new Error(`phos run failed (${r.code}): ${r.stderr}`);
    return (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { process: { pid: number; logPath: string } }).process;
  }

  async function ps(node: MeshNode): Promise<{ pid: number; state: string }[]> {
    const r = await mesh.phos(['ps', '--json'], node);
    return (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { processes: { pid: number; state: string }[] }).processes;
  }

  /** What the coordinator and agents said about migrations, for failure messages. */
  function diag(): string {
    const pick = (s: string) => s.split('\n').filter((l) => /migration|pre-copy|cutover|restore|level":[45]0/.test(l)).slice(-40).join('\n');
    return `coordinator:\n${pick(mesh.coordinatorLog())}\n${a.name}:\n${pick(a.log())}\n${b.name}:\n${pick(b.log())}`;
  }

  function states(out: string): State[] {
    return out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as State);
  }

  it('moves a running counter to the other host; it continues bit-exact there and is gone from the source', async () => {
    const args = ['--mib', '64', '--steps', '400', '--step-ms', '15'];
    const expected = referenceChecksum('counter', args);
    const p = await run(a, args);
    await waitForLog(p.logPath, (l) => l.steps.length >= 20);
    const r = await mesh.phos(['migrate', '--pid', String(p.pid), '--from', a.name, '--to', b.name, '--nats', mesh.natsUrl, '--json']);
    const seen = states(r.stdout);
    const last = seen.at(-1);
    expect(last?.phase, `${r.stderr}\n${mesh.coordinatorLog().slice(-3000)}\n${a.log().slice(-3000)}\n${b.log().slice(-3000)}`).toBe('succeeded');
    expect(r.code).toBe(0);
    expect(seen.map((s) => s.phase)).toEqual(expect.arrayContaining(['preparing-target', 'pre-copy', 'cutover', 'restoring', 'succeeded']));
    expect(last!.downtimeMs).toBeGreaterThan(0);
    expect(last!.bytesSent).toBeGreaterThanOrEqual(64 << 20);
    expect((await ps(b)).find((x) => x.pid === p.pid)?.state).toBe('running');
    expect((await ps(a)).find((x) => x.pid === p.pid && x.state === 'running')).toBeUndefined();
    const final = await waitForLog(p.logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 90_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
  }, 240_000);

  it('a cancelled migration leaves the app running on the source; the target keeps nothing', async () => {
    const args = ['--mib', '16', '--steps', '1000', '--step-ms', '15'];
    const expected = referenceChecksum('counter', args);
    const p = await run(a, args);
    await waitForLog(p.logPath, (l) => l.steps.length >= 5);
    // 1 MiB/s: the first round alone takes ~30 s, so the cancel lands in pre-copy.
    const mig = mesh.phos(['migrate', '--pid', String(p.pid), '--from', a.name, '--to', b.name, '--nats', mesh.natsUrl, '--bandwidth', '1MiB/s', '--json']);
    let id = '';
    let listed = '';
    for (const end = Date.now() + 60_000; !id && Date.now() < end;) {
      const l = await mesh.phos(['migrations', '--json', '--nats', mesh.natsUrl]);
      listed = l.stdout + l.stderr;
      const open = (JSON.parse(l.stdout.trim().split('\n').at(-1) || '[]') as (State & { pid: number })[]).find((m) => m.pid === p.pid && m.phase === 'pre-copy' && m.bytesSent > 0);
      if (open) id = open.id; else await new Promise((res) => setTimeout(res, 200));
    }
    expect(id, `${listed}\n${mesh.coordinatorLog().slice(-4000)}\n${a.log().slice(-4000)}`).not.toBe('');
    const c = await mesh.phos(['migrate', 'cancel', id, '--nats', mesh.natsUrl]);
    expect(c.code, c.stderr).toBe(0);
    const r = await mig;
    expect(states(r.stdout).at(-1)?.phase).toBe('cancelled');
    expect(r.code).toBe(9);
    expect((await ps(a)).find((x) => x.pid === p.pid)?.state).toBe('running');
    expect((await ps(b)).find((x) => x.pid === p.pid)).toBeUndefined();
    const final = await waitForLog(p.logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 90_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
  }, 240_000);

  it('the target agent dying in pre-copy rolls the migration back; the source runs on', async () => {
    const args = ['--mib', '16', '--steps', '2000', '--step-ms', '15'];
    const expected = referenceChecksum('counter', args);
    const p = await run(a, args);
    await waitForLog(p.logPath, (l) => l.steps.length >= 5);
    const mig = mesh.phos(['migrate', '--pid', String(p.pid), '--from', a.name, '--to', b.name, '--nats', mesh.natsUrl, '--bandwidth', '1MiB/s', '--json']);
    const before = a.log().split('pre-copy round').length;
    for (const end = Date.now() + 20_000; a.log().split('pre-copy round').length === before && Date.now() < end;) await new Promise((res) => setTimeout(res, 100));
    await mesh.stopAgent(b, 'SIGKILL');
    const r = await mig;
    const last = states(r.stdout).at(-1);
    expect(last?.phase, `exit ${r.code}\n${r.stdout}\n${r.stderr}\n${diag()}`).toBe("rolled-back");
    expect(last?.error?.message).toMatch(/source keeps running/);
    expect(r.code).not.toBe(0);
    expect((await ps(a)).find((x) => x.pid === p.pid)?.state, diag()).toBe('running');
    const final = await waitForLog(p.logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 90_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
    expect(parseWorkloadLog(readFileSync(p.logPath, 'utf8')).steps.length).toBe(2000);
    await mesh.startAgent(b);
  }, 240_000);
});
