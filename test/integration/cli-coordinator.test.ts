// The CLI against a coordinator process over real NATS: phos nodes lists registered nodes, phos migrate
// validates and follows a migration to its end, phos migrate cancel names what it cannot find.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { PROTO_VERSION, buckets, subjects } from '../../proto/src/index.ts';
import { openBus, type Bus } from '../../services/coordinator/src/index.ts';
import { startNats, type NatsHandle } from '../helpers/nats.ts';
import { ROOT } from '../helpers/paths.ts';

const v = PROTO_VERSION;
const PHOS = join(ROOT, 'bin', 'phos');

function phos(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(PHOS, args, { encoding: 'utf8' }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }));
  });
}

describe('phos nodes / migrate against a coordinator', () => {
  let nats: NatsHandle;
  let coord: ChildProcess;
  let agents: Bus;
  let beat: NodeJS.Timeout | undefined;

  beforeAll(async () => {
    nats = await startNats();
    coord = spawn(process.execPath, ['--import', join(ROOT, 'node_modules/tsx/dist/esm/index.mjs'), join(ROOT, 'services/coordinator/src/main.ts'), '--nats', nats.url], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, PHOS_LOG_LEVEL: 'warn' } });
    agents = await openBus(nats.url, 'test-agents');
    // The coordinator is ready once it answers a list request.
    for (let i = 0; ; i++) {
      try { await agents.request(subjects.coord('nodes'), 'list-request', { v }, 500); break; } catch (e) { if (i > 60) throw e; await new Promise((r) => setTimeout(r, 200)); }
    }
    const gpus = [{ index: 0, uuid: 'GPU-1', model: 'phos-sim', memBytes: 2 ** 33, freeBytes: 2 ** 33 }];
    for (const node of ['host1', 'host2']) {
      await agents.request(subjects.coord('register'), 'node-register', { v, node, host: node, dataAddr: '127.0.0.1:0', gpus, simulated: true, driverVersion: 13000, agentVersion: '0.1.0' });
    }
    beat = setInterval(() => { for (const node of ['host1', 'host2']) agents.publish(subjects.heartbeat(node), 'heartbeat', { v, node, at: Date.now(), processes: 0 }); }, 500);
    const procs = await agents.kv(buckets.processes);
    await procs.put('process-record', 'host1.4321', { v, node: 'host1', pid: 4321, job: 'counter', device: 0, gpuBytes: 2 ** 30, startedAt: Date.now() });
  }, 60_000);

  afterAll(async () => {
    clearInterval(beat);
    coord?.kill('SIGTERM');
    await agents?.close();
    await nats?.stop();
  });

  it('phos nodes lists the registered nodes as alive', async () => {
    const r = await phos(['nodes', '--json', '--nats', nats.url]);
    expect(r.code, r.stderr).toBe(0);
    const list = JSON.parse(r.stdout) as { node: string; alive: boolean }[];
    expect(list.map((n) => [n.node, n.alive])).toEqual([['host1', true], ['host2', true]]);
    const table = await phos(['nodes', '--nats', nats.url]);
    expect(table.stdout).toMatch(/host1\s+alive\s+0:phos-sim 8\.0 GiB free/);
  });

  it('phos migrate refuses an unknown target with exit 3 and the reason', async () => {
    const r = await phos(['migrate', '--pid', '4321', '--from', 'host1', '--to', 'host9', '--nats', nats.url]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/error NOT_FOUND: target node host9 is not registered/);
    expect(r.stderr).toMatch(/remedy: phos nodes/);
  });

  it('phos migrate follows an accepted migration to its end: the target agent is absent, so it rolls back', async () => {
    const r = await phos(['migrate', '--pid', '4321', '--from', 'host1', '--to', 'host2', '--bandwidth', '1GB/s', '--json', '--nats', nats.url]);
    const states = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { phase: string; error: { code: string } | null });
    expect(states.map((s) => s.phase)).toEqual(['pending', 'preparing-target', 'rolled-back']);
    expect(states.at(-1)!.error!.code).toBe('AGENT_UNAVAILABLE');
    expect(r.code).toBe(5);
    const list = await phos(['migrations', '--nats', nats.url]);
    expect(list.stdout).toMatch(/mig-\w+\s+4321\s+host1 -> host2\s+rolled-back/);
  }, 30_000);

  it('rejects bad arguments before talking to anyone', async () => {
    expect((await phos(['migrate', '--pid', 'x', '--to', 'host2'])).code).toBe(2);
    const r = await phos(['migrate', '--pid', '1', '--to', 'host2', '--bandwidth', 'fast']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot read rate 'fast'/);
    const c = await phos(['migrate', 'cancel', 'mig-none', '--nats', nats.url]);
    expect(c.code).toBe(3);
    expect(c.stderr).toMatch(/no migration mig-none/);
  });
});
