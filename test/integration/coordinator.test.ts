// The coordinator against a real NATS server: agents (played here by plain NATS clients speaking the
// proto messages) register and heartbeat; requests are validated against KV state; migrations are
// persisted with revision checks and settled after a coordinator restart.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PROTO_VERSION, buckets, subjects, type Message, type PhosError } from '../../proto/src/index.ts';
import { createLogger } from '../../common/src/index.ts';
import { Coordinator, MIGRATION_TRANSITIONS, openBus, type Bus, type MigrationState } from '../../services/coordinator/src/index.ts';
import { startNats, type NatsHandle } from '../helpers/nats.ts';

const v = PROTO_VERSION;
const log = createLogger({ service: 'test', level: 'silent' });
const GiB = 2 ** 30;

function node(name: string, freeGiB = 100, model = 'phos-sim'): Message<'node-register'> {
  return { v, node: name, host: name, dataAddr: '127.0.0.1:0', gpus: [{ index: 0, uuid: `GPU-${name}`, model, memBytes: 141 * GiB, freeBytes: freeGiB * GiB }], simulated: true, driverVersion: 13000, agentVersion: '0.1.0' };
}

function request(overrides: Partial<Message<'migrate-request'>> = {}): Message<'migrate-request'> {
  return { v, pid: 4242, from: 'a', to: 'b', bandwidthBytesPerSec: null, maxDowntimeMs: 1500, timeoutMs: 60_000, mode: 'auto', ...overrides };
}

async function waitFor<T>(f: () => Promise<T | undefined>, timeoutMs = 8000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await f();
    if (r !== undefined) return r;
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((res) => setTimeout(res, 50));
  }
}

describe('coordinator', () => {
  let nats: NatsHandle;
  let agent: Bus;
  let coord: Coordinator | null = null;
  const HB = 150;

  beforeAll(async () => {
    nats = await startNats();
    agent = await openBus(nats.url, 'test-agents');
  });
  afterAll(async () => { await agent?.close(); await nats?.stop(); });
  afterEach(async () => { await coord?.stop(); coord = null; });

  const start = async () => { coord = await Coordinator.start({ natsUrl: nats.url, heartbeatMs: HB, missedHeartbeats: 3, agentTimeoutMs: 500 }, log); return coord; };
  const ask = (verb: string, type: 'list-request' | 'migrate-request' | 'cancel-request', body: unknown) => agent.request(subjects.coord(verb), type, body as never, 3000);
  const migrations = async () => (await ask('migrations', 'list-request', { v })) as MigrationState[];

  it('registers nodes, lists them alive, and marks a silent node down after missed heartbeats', async () => {
    await start();
    await ask('register', 'list-request', {}).catch(() => undefined); // wrong body type is refused, not fatal
    await agent.request(subjects.coord('register'), 'node-register', node('a'));
    await agent.request(subjects.coord('register'), 'node-register', node('b'));
    const beat = setInterval(() => agent.publish(subjects.heartbeat('a'), 'heartbeat', { v, node: 'a', at: Date.now(), processes: 1 }), HB / 2);
    try {
      const down = await waitFor(async () => {
        const ns = (await ask('nodes', 'list-request', { v })) as Message<'node-record'>[];
        const b = ns.find((n) => n.node === 'b');
        return b && !b.alive ? ns : undefined;
      });
      expect(down.find((n) => n.node === 'a')).toMatchObject({ alive: true });
      expect(down.find((n) => n.node === 'b')).toMatchObject({ alive: false });
    } finally {
      clearInterval(beat);
    }
  });

  it('refuses migrations with an error that names what is wrong', async () => {
    await start();
    await agent.request(subjects.coord('register'), 'node-register', node('a'));
    await agent.request(subjects.coord('register'), 'node-register', node('b', 1));
    await agent.request(subjects.coord('register'), 'node-register', node('c', 100, 'other-gpu'));
    const procs = await agent.kv(buckets.processes);
    await procs.put('process-record', 'a.4242', { v, node: 'a', pid: 4242, job: 'train', device: 0, gpuBytes: 16 * GiB, startedAt: 1 });
    const fail = async (r: Message<'migrate-request'>) => {
      try { await ask('migrate', 'migrate-request', r); } catch (e) { return e as PhosError; }
      throw new Error('accepted');
    };
    expect(await fail(request({ to: 'nowhere' }))).toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/target node nowhere is not registered/) });
    expect(await fail(request({ pid: 99 }))).toMatchObject({ code: 'NOT_MANAGED', message: expect.stringMatching(/pid 99 is not a phos-managed process on a/) });
    expect(await fail(request({ to: 'b' }))).toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/no free phos-sim GPU with 17179869184 B/) });
    expect(await fail(request({ to: 'c' }))).toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/other-gpu/) });
    expect(await fail(request({ to: 'a' }))).toMatchObject({ code: 'BAD_ARGS' });
    expect(await migrations()).toEqual([]);
  });

  it('persists an accepted migration and rolls it back when the target agent does not answer', async () => {
    await start();
    await agent.request(subjects.coord('register'), 'node-register', node('a'));
    await agent.request(subjects.coord('register'), 'node-register', node('d'));
    const procs = await agent.kv(buckets.processes);
    await procs.put('process-record', 'a.777', { v, node: 'a', pid: 777, job: 'j', device: 0, gpuBytes: GiB, startedAt: 1 });
    const { id } = (await ask('migrate', 'migrate-request', request({ pid: 777, to: 'd' }))) as { id: string };
    const done = await waitFor(async () => (await migrations()).find((m) => m.id === id && m.phase === 'rolled-back'));
    expect(done.error).toMatchObject({ code: 'AGENT_UNAVAILABLE' });
    expect(done.error!.message).toMatch(/phos\.v1\.agent\.d\.prepare-target/);
  });

  it('settles open migrations left by a previous coordinator: the source keeps running', async () => {
    const kv = await agent.kv(buckets.migrations);
    const base = { v, pid: 5, from: 'a', to: 'b', bytesTotal: 1, bytesSent: 0, bytesRemaining: 1, dirtyBytesPerSec: 0, startedAt: 1, updatedAt: 1, downtimeMs: null, error: null };
    await kv.put('migration-state', 'mig-left1', { ...base, id: 'mig-left1', phase: 'pre-copy' });
    await kv.put('migration-state', 'mig-left2', { ...base, id: 'mig-left2', phase: 'post-copy' });
    await kv.put('migration-state', 'mig-left3', { ...base, id: 'mig-left3', pid: 6, phase: 'restoring' });
    await kv.put('migration-state', 'mig-left4', { ...base, id: 'mig-left4', pid: 7, phase: 'restoring' });
    // mig-left3's app runs on the target (its agent publishes it); mig-left4's does not.
    await (await agent.kv(buckets.processes)).put('process-record', 'b.6', { v, node: 'b', pid: 6, job: 'j', device: 0, gpuBytes: 1, startedAt: 1 });
    await start();
    const ms = await migrations();
    expect(ms.find((m) => m.id === 'mig-left3')).toMatchObject({ phase: 'succeeded', error: null });
    // mig-left4's source agent must give the app back; there is none here, so it ends failed, saying so.
    const left4 = await waitFor(async () => (await migrations()).find((m) => m.id === 'mig-left4' && m.phase !== 'restoring'));
    expect(left4).toMatchObject({ phase: 'failed', error: { message: expect.stringMatching(/coordinator restarted during restoring; and the source could not take the app back/) } });
    expect(ms.find((m) => m.id === 'mig-left1')).toMatchObject({ phase: 'rolled-back', error: { message: expect.stringMatching(/source keeps running/) } });
    expect(ms.find((m) => m.id === 'mig-left2')).toMatchObject({ phase: 'failed' });
    // cancelling a finished migration is refused, naming how it ended
    await expect(ask('cancel', 'cancel-request', { v, id: 'mig-left1' })).rejects.toMatchObject({ code: 'ILLEGAL_STATE', message: expect.stringMatching(/already ended \(rolled-back\)/) });
    await expect(ask('cancel', 'cancel-request', { v, id: 'mig-nope' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('allows only the table\'s moves: no way back from a terminal phase, no rollback after the target runs', () => {
    for (const t of ['succeeded', 'failed', 'cancelled', 'rolled-back'] as const) expect(MIGRATION_TRANSITIONS[t]).toEqual([]);
    expect(MIGRATION_TRANSITIONS['post-copy']).not.toContain('rolled-back');
    expect(MIGRATION_TRANSITIONS.cutover).not.toContain('cancelled');
  });
});
