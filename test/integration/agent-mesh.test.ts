// An agent configured with a NATS server joins the mesh: the coordinator lists its node with the GPU it
// sees, and the processes it manages appear in the KV processes bucket (and leave it with the agent).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '../../common/src/index.ts';
import { PROTO_VERSION, subjects, type Message } from '../../proto/src/index.ts';
import { Coordinator, openBus, type Bus } from '../../services/coordinator/src/index.ts';
import { startNats, type NatsHandle } from '../helpers/nats.ts';
import { waitForLog, workloadPath } from '../helpers/workload.ts';
import { startAgent, type AgentHandle } from './agent-harness.ts';

const v = PROTO_VERSION;

async function until<T>(f: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const r = await f();
    if (r !== undefined) return r;
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((res) => setTimeout(res, 100));
  }
}

describe('agent in the mesh', () => {
  let nats: NatsHandle;
  let coord: Coordinator;
  let cli: Bus;
  let agent: AgentHandle;

  beforeAll(async () => {
    nats = await startNats();
    coord = await Coordinator.start({ natsUrl: nats.url }, createLogger({ service: 'test', level: 'silent' }));
    cli = await openBus(nats.url, 'test-cli');
    const cfg = join(process.env.TMPDIR ?? '/tmp', `phos-mesh-${process.pid}.yaml`);
    writeFileSync(cfg, `nats: ${nats.url}\n`);
    agent = await startAgent('22000-22499', { PHOS_AGENT_CONFIG: cfg });
  }, 60_000);
  afterAll(async () => { await agent?.stop(); await cli?.close(); await coord?.stop(); await nats?.stop(); });

  it('registers its node and GPU, and publishes the processes it manages until it leaves', async () => {
    const nodes = await until(async () => {
      const ns = (await cli.request(subjects.coord('nodes'), 'list-request', { v })) as Message<'node-record'>[];
      return ns.find((n) => n.node === 'test') ? ns : undefined;
    });
    const me = nodes.find((n) => n.node === 'test')!;
    expect(me).toMatchObject({ alive: true, simulated: true, driverVersion: 13000 });
    expect(me.gpus[0]).toMatchObject({ index: 0, model: 'phos-sim' });

    const p = await agent.run([workloadPath('counter'), '--mib', '32', '--steps', '0', '--step-ms', '20'], 'counter');
    await waitForLog(p.logPath, (l) => l.steps.length >= 3);
    const rec = await until(async () => {
      const ps = (await cli.request(subjects.coord('processes'), 'list-request', { v })) as Message<'process-record'>[];
      return ps.find((x) => x.pid === p.pid && x.gpuBytes > 0);
    });
    expect(rec).toMatchObject({ node: 'test', job: 'counter' });
    expect(rec.gpuBytes).toBeGreaterThanOrEqual(32 << 20);

    await agent.stop();
    const ps = (await cli.request(subjects.coord('processes'), 'list-request', { v })) as Message<'process-record'>[];
    expect(ps.filter((x) => x.node === 'test')).toEqual([]);
  }, 60_000);
});
