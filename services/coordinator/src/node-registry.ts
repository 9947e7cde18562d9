// Which nodes exist and whether they are alive: agents register (request) and heartbeat (publish); a
// node that misses `missedHeartbeats` in a row is marked down. Records live in the KV `nodes` bucket;
// heartbeat times are kept in memory and written only when liveness changes, so heartbeats cost no KV
// writes (a write per heartbeat per node would be most of the bucket's traffic).
import { PROTO_VERSION, subjects, type Message } from '../../../proto/src/index.ts';
import type { Logger } from '../../../common/src/index.ts';
import type { Bus, KvStore } from './bus.ts';
import type { CompiledCoordinatorOptions } from './options.ts';

export type NodeRecord = Message<'node-record'>;

export class NodeRegistry {
  private timer: NodeJS.Timeout | null = null;
  /** Last heartbeat per node (ms). A restarted coordinator starts everyone's clock at its start. */
  private readonly lastSeen = new Map<string, number>();
  private readonly startedAt = Date.now();

  constructor(private readonly bus: Bus, private readonly kv: KvStore, private readonly opts: CompiledCoordinatorOptions, private readonly log: Logger) {}

  start(): void {
    this.bus.serve(subjects.coord('register'), 'node-register', (m) => this.register(m));
    this.bus.listen(subjects.heartbeat('*'), 'heartbeat', (hb) => {
      this.beat(hb.node, hb.at).catch((err: unknown) => this.log.debug({ err, node: hb.node }, 'heartbeat not recorded'));
    }, (e) => this.log.warn({ err: e }, 'bad heartbeat'));
    this.timer = setInterval(() => {
      this.sweep().catch((err: unknown) => this.log.warn({ err }, 'liveness sweep failed'));
    }, this.opts.heartbeatMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async register(m: Message<'node-register'>): Promise<NodeRecord> {
    const now = Date.now();
    const prev = await this.kv.get('node-record', m.node);
    const rec: NodeRecord = { ...m, v: PROTO_VERSION, registeredAt: prev?.value.registeredAt ?? now, lastSeen: now, alive: true };
    this.lastSeen.set(m.node, now);
    await this.kv.put('node-record', m.node, rec);
    this.log.info({ node: m.node, gpus: m.gpus.length, simulated: m.simulated }, prev ? 'node re-registered' : 'node registered');
    return rec;
  }

  private async beat(node: string, _at: number): Promise<void> {
    const now = Date.now();
    const known = this.lastSeen.has(node);
    this.lastSeen.set(node, now);
    if (known && this.alive.get(node) !== false) return;
    const cur = await this.kv.get('node-record', node);
    if (!cur) { this.log.warn({ node }, 'heartbeat from an unregistered node'); return; }
    this.alive.set(node, cur.value.alive);
    if (cur.value.alive) return;
    await this.kv.update('node-record', node, { ...cur.value, lastSeen: now, alive: true }, cur.revision);
    this.alive.set(node, true);
    this.log.info({ node }, 'node is back');
  }

  private readonly alive = new Map<string, boolean>();

  /** Marks nodes down whose last heartbeat is too old. */
  async sweep(): Promise<void> {
    const limit = Date.now() - this.opts.heartbeatMs * this.opts.missedHeartbeats;
    for (const node of await this.list()) {
      if (!node.alive || node.lastSeen >= limit) continue;
      const cur = await this.kv.get('node-record', node.node);
      if (!cur || !cur.value.alive) continue;
      await this.kv.update('node-record', node.node, { ...cur.value, lastSeen: node.lastSeen, alive: false }, cur.revision)
        .then(() => { this.alive.set(node.node, false); this.log.warn({ node: node.node, lastSeen: node.lastSeen }, 'node marked down: heartbeats missed'); })
        .catch(() => { /* re-registered meanwhile */ });
    }
  }

  /** The record with the in-memory heartbeat time folded in. */
  private withLiveness(r: NodeRecord): NodeRecord {
    const seen = this.lastSeen.get(r.node) ?? Math.max(r.lastSeen, r.alive ? this.startedAt : 0);
    return { ...r, lastSeen: Math.max(seen, r.lastSeen) };
  }

  async get(node: string): Promise<NodeRecord | null> {
    const r = (await this.kv.get('node-record', node))?.value;
    return r ? this.withLiveness(r) : null;
  }

  async list(): Promise<NodeRecord[]> {
    const out = (await this.kv.entries('node-record')).map((e) => this.withLiveness(e.value));
    return out.sort((a, b) => a.node.localeCompare(b.node));
  }
}
