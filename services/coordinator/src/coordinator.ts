// The cluster brain: serves the coordinator API on NATS (register, nodes, processes, migrate, cancel,
// migrations), validates every request against cluster state in KV, owns migration records, and on
// start settles migrations a previous coordinator left open (fail open: the source keeps running).
import { randomUUID } from 'node:crypto';
import { PhosError, PROTO_VERSION, buckets, subjects, type Message } from '../../../proto/src/index.ts';
import type { Logger } from '../../../common/src/index.ts';
import { openBus, type Bus, type KvStore } from './bus.ts';
import { MigrationRecord, isTerminal, type MigrationState } from './migration-machine.ts';
import { NodeRegistry } from './node-registry.ts';
import { compileCoordinatorOptions, type CompiledCoordinatorOptions, type CoordinatorOptions } from './options.ts';

export type ProcessRecord = Message<'process-record'>;

export class Coordinator {
  private readonly records = new Map<string, MigrationRecord>();

  private constructor(
    readonly opts: CompiledCoordinatorOptions,
    private readonly bus: Bus,
    private readonly nodes: NodeRegistry,
    private readonly processes: KvStore,
    private readonly migrations: KvStore,
    private readonly log: Logger,
  ) {}

  /** Connects to NATS, opens the KV buckets, settles leftovers and starts serving. */
  static async start(options: CoordinatorOptions, log: Logger): Promise<Coordinator> {
    const opts = compileCoordinatorOptions(options);
    const bus = await openBus(opts.natsUrl, 'phos-coordinator');
    const [nodesKv, processes, migrations] = await Promise.all([bus.kv(buckets.nodes), bus.kv(buckets.processes), bus.kv(buckets.migrations)]);
    const c = new Coordinator(opts, bus, new NodeRegistry(bus, nodesKv, opts, log.child({ component: 'nodes' })), processes, migrations, log);
    await c.settleLeftovers();
    c.nodes.start();
    c.serve();
    await bus.flush();
    log.info({ nats: opts.natsUrl }, 'coordinator started');
    return c;
  }

  async stop(): Promise<void> {
    this.nodes.stop();
    await this.bus.close();
  }

  private serve(): void {
    this.bus.serve(subjects.coord('nodes'), 'list-request', () => this.nodes.list());
    this.bus.serve(subjects.coord('processes'), 'list-request', () => this.listProcesses());
    this.bus.serve(subjects.coord('migrations'), 'list-request', () => this.listMigrations());
    this.bus.serve(subjects.coord('migrate'), 'migrate-request', (r) => this.migrate(r));
    this.bus.serve(subjects.coord('cancel'), 'cancel-request', (r) => this.cancel(r.id));
  }

  async listProcesses(): Promise<ProcessRecord[]> {
    const out: ProcessRecord[] = [];
    for (const k of await this.processes.keys()) {
      const r = await this.processes.get('process-record', k);
      if (r) out.push(r.value);
    }
    return out;
  }

  async listMigrations(): Promise<MigrationState[]> {
    const out: MigrationState[] = [];
    for (const k of await this.migrations.keys()) {
      const r = await this.migrations.get('migration-state', k);
      if (r) out.push(r.value);
    }
    return out.sort((a, b) => a.startedAt - b.startedAt);
  }

  /** Checks a migration request against cluster state; throws a PhosError naming what is wrong. */
  async validate(r: Message<'migrate-request'>): Promise<ProcessRecord> {
    if (r.from === r.to) throw new PhosError('BAD_ARGS', `pid ${r.pid} is already on ${r.to}`, { remedy: 'name another node with --to' });
    const [src, dst] = await Promise.all([this.nodes.get(r.from), this.nodes.get(r.to)]);
    if (!src) throw new PhosError('NOT_FOUND', `source node ${r.from} is not registered`, { remedy: 'phos nodes' });
    if (!dst) throw new PhosError('NOT_FOUND', `target node ${r.to} is not registered`, { remedy: 'phos nodes' });
    if (!src.alive) throw new PhosError('AGENT_UNAVAILABLE', `source node ${r.from} is down (no heartbeat since ${new Date(src.lastSeen).toISOString()})`);
    if (!dst.alive) throw new PhosError('AGENT_UNAVAILABLE', `target node ${r.to} is down (no heartbeat since ${new Date(dst.lastSeen).toISOString()})`, { remedy: 'start its agent, or pick another node (phos nodes)' });
    const proc = (await this.processes.get('process-record', `${r.from}.${r.pid}`))?.value;
    if (!proc) throw new PhosError('NOT_MANAGED', `pid ${r.pid} is not a phos-managed process on ${r.from}`, { remedy: `start it with phos run on ${r.from}; list managed processes with phos ps` });
    const model = src.gpus.find((g) => g.index === proc.device)?.model;
    const fit = dst.gpus.filter((g) => g.model === model && g.freeBytes >= proc.gpuBytes);
    if (!fit.length) {
      const have = dst.gpus.map((g) => `${g.model} with ${g.freeBytes} B free`).join(', ') || 'no GPUs';
      throw new PhosError('NOT_FOUND', `target ${r.to} has no free ${model ?? 'matching'} GPU with ${proc.gpuBytes} B (it has ${have})`, { remedy: 'free a GPU on the target or pick another node' });
    }
    const busy = (await this.listMigrations()).find((m) => m.pid === r.pid && m.from === r.from && !isTerminal(m.phase));
    if (busy) throw new PhosError('ILLEGAL_STATE', `pid ${r.pid} on ${r.from} is already migrating (${busy.id}, ${busy.phase})`, { remedy: `phos migrate cancel ${busy.id}` });
    return proc;
  }

  async migrate(r: Message<'migrate-request'>): Promise<Message<'migrate-accepted'>> {
    const proc = await this.validate(r);
    const id = `mig-${randomUUID().slice(0, 8)}`;
    const rec = await MigrationRecord.create(this.migrations, this.bus, this.log, {
      id, pid: r.pid, from: r.from, to: r.to, bytesTotal: proc.gpuBytes, bytesSent: 0, bytesRemaining: proc.gpuBytes,
      dirtyBytesPerSec: 0, downtimeMs: null, error: null,
    });
    this.records.set(id, rec);
    void this.run(rec, r);
    return { v: PROTO_VERSION, id };
  }

  /**
   * Drives a migration through its phases by asking the agents. The first agent step prepares the
   * target; any failure before the target resumes ends in rolled-back with the error recorded.
   */
  private async run(rec: MigrationRecord, r: Message<'migrate-request'>): Promise<void> {
    try {
      await rec.transition('preparing-target', 'accepted');
      await this.bus.request(subjects.agent(r.to, 'prepare-target'), 'migrate-request', r, this.opts.agentTimeoutMs);
      await rec.transition('pre-copy', 'target prepared');
      await this.bus.request(subjects.agent(r.from, 'pre-copy'), 'migrate-request', r, r.timeoutMs);
      throw new PhosError('INTERNAL', 'cutover is not implemented by this coordinator yet');
    } catch (err) {
      const e = err instanceof PhosError ? err : new PhosError('INTERNAL', String(err));
      if (isTerminal(rec.state.phase)) return;
      const to = rec.state.phase === 'restoring' || rec.state.phase === 'post-copy' ? 'failed' : 'rolled-back';
      await rec.transition(to, e.message, { error: { code: e.code, message: e.message, remedy: e.remedy } })
        .catch((e2: unknown) => this.log.error({ err: e2, migrationId: rec.state.id }, 'could not record migration failure'));
    }
  }

  async cancel(id: string): Promise<MigrationState> {
    const cur = await this.migrations.get('migration-state', id);
    if (!cur) throw new PhosError('NOT_FOUND', `no migration ${id}`, { remedy: 'phos migrations' });
    const rec = this.records.get(id) ?? new MigrationRecord(this.migrations, this.bus, this.log, cur.value, cur.revision);
    rec.state = cur.value;
    rec.revision = cur.revision;
    await rec.transition('cancelled', 'cancelled by request');
    return rec.state;
  }

  /** A restarted coordinator cannot know how far agents got: it ends open migrations, source first. */
  private async settleLeftovers(): Promise<void> {
    for (const m of await this.listMigrations()) {
      if (isTerminal(m.phase)) continue;
      const cur = await this.migrations.get('migration-state', m.id);
      if (!cur) continue;
      const rec = new MigrationRecord(this.migrations, this.bus, this.log, cur.value, cur.revision);
      const to = m.phase === 'restoring' || m.phase === 'post-copy' ? 'failed' : 'rolled-back';
      const message = `coordinator restarted during ${m.phase}; ${to === 'rolled-back' ? 'the source keeps running' : 'the source keeps its copy until the target is verified'}`;
      await rec.transition(to, message, { error: { code: 'INTERNAL', message, remedy: 'retry the migration' } })
        .catch((err: unknown) => this.log.error({ err, migrationId: m.id }, 'could not settle migration'));
    }
  }
}
