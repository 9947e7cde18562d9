// Which nodes exist and whether they are alive: agents register (request) and heartbeat (publish); a
// node that misses `missedHeartbeats` in a row is marked down. State lives in the KV `nodes` bucket.
import { PROTO_VERSION, subjects, type Message } from '../../../proto/src/index.ts';
import type { Logger } from '../../../common/src/index.ts';
import type { Bus, KvStore } from './bus.ts';
import type { CompiledCoordinatorOptions } from './options.ts';

export type NodeRecord = Message<'node-record'>;

export class NodeRegistry {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly bus: Bus, private readonly kv: KvStore, private readonly opts: CompiledCoordinatorOptions, private readonly log: Logger) {}

  start(): void {
    this.bus.serve(subjects.coord('register'), 'node-register', (m) => this.register(m));
    this.bus.listen(subjects.heartbeat('*'), 'heartbeat', (hb) => { void this.beat(hb.node, hb.at); }, (e) => this.log.warn({ err: e }, 'bad heartbeat'));
    this.timer = setInterval(() => { void this.sweep(); }, this.opts.heartbeatMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async register(m: Message<'node-register'>): Promise<NodeRecord> {
    const now = Date.now();
    const prev = await this.kv.get('node-record', m.node);
    const rec: NodeRecord = { ...m, v: PROTO_VERSION, registeredAt: prev?.value.registeredAt ?? now, lastSeen: now, alive: true };
    await this.kv.put('node-record', m.node, rec);
    this.log.info({ node: m.node, gpus: m.gpus.length, simulated: m.simulated }, prev ? 'node re-registered' : 'node registered');
    return rec;
  }

  private async beat(node: string, at: number): Promise<void> {
    const cur = await this.kv.get('node-record', node);
    if (!cur) { this.log.warn({ node }, 'heartbeat from an unregistered node'); return; }
    if (!cur.value.alive) this.log.info({ node }, 'node is back');
    await this.kv.update('node-record', node, { ...cur.value, lastSeen: Math.max(at, Date.now()), alive: true }, cur.revision)
      .catch((err: unknown) => this.log.debug({ node, err }, 'heartbeat lost a race; next one wins'));
  }

  /** Marks nodes down whose last heartbeat is too old. */
  async sweep(): Promise<void> {
    const limit = Date.now() - this.opts.heartbeatMs * this.opts.missedHeartbeats;
    for (const node of await this.list()) {
      if (!node.alive || node.lastSeen >= limit) continue;
      const cur = await this.kv.get('node-record', node.node);
      if (!cur || cur.value.lastSeen >= limit) continue;
      await this.kv.update('node-record', node.node, { ...cur.value, alive: false }, cur.revision)
        .then(() => this.log.warn({ node: node.node, lastSeen: cur.value.lastSeen }, 'node marked down: heartbeats missed'))
        .catch(() => { /* a heartbeat arrived meanwhile */ });
    }
  }

  async get(node: string): Promise<NodeRecord | null> {
    return (await this.kv.get('node-record', node))?.value ?? null;
  }

  async list(): Promise<NodeRecord[]> {
    const out: NodeRecord[] = [];
    for (const k of await this.kv.keys()) {
      const r = await this.kv.get('node-record', k);
      if (r) out.push(r.value);
    }
    return out.sort((a, b) => a.node.localeCompare(b.node));
  }
}
