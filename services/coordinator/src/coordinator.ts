// The cluster brain: serves the coordinator API on NATS (register, nodes, processes, migrate, cancel,
// migrations), validates every request against cluster state in KV, owns migration records, and on
// start settles migrations a previous coordinator left open (fail open: the source keeps running).
import { randomUUID } from 'node:crypto';
import { PhosError, PROTO_VERSION, buckets, subjects, toPhosError, type Message } from '../../../proto/src/index.ts';
import type { Logger } from '../../../common/src/index.ts';
import { openBus, type Bus, type KvStore } from './bus.ts';
import { MigrationRecord, isTerminal, type MigrationState } from './migration-machine.ts';
import { NodeRegistry, type NodeRecord } from './node-registry.ts';
import { initTelemetry, type Telemetry } from './telemetry.ts';
import { compileCoordinatorOptions, type CompiledCoordinatorOptions, type CoordinatorOptions } from './options.ts';

export type ProcessRecord = Message<'process-record'>;

/**
 * The target GPU for each of the process's devices (index = the app's ordinal): `--gpus` as given, checked;
 * else the lowest-numbered GPUs of the source's model with room for their share of its memory.
 */
export function pickGpus(r: Message<'migrate-request'>, proc: ProcessRecord, src: NodeRecord, dst: NodeRecord): number[] {
  const n = proc.devices ?? 1;
  const model = src.gpus.find((g) => g.index === proc.device)?.model;
  const share = Math.ceil(proc.gpuBytes / n);
  const have = dst.gpus.map((g) => `GPU ${g.index}: ${g.model} with ${g.freeBytes} B free`).join(', ') || 'no GPUs';
  const fits = (g: NodeRecord['gpus'][number]) => (model === undefined || g.model === model) && g.freeBytes >= share;
  if (!r.gpus) {
    const fit = dst.gpus.filter(fits).sort((a, b) => a.index - b.index).slice(0, n);
    if (fit.length < n) {
      throw new PhosError('NOT_FOUND', `target ${r.to} has no ${n > 1 ? `${n} free` : 'free'} ${model ?? 'matching'} GPU${n > 1 ? 's' : ''} with ${share} B each (it has ${have})`, { remedy: 'free a GPU on the target or pick another node' });
    }
    return fit.map((g) => g.index);
  }
  if (r.gpus.length !== n) throw new PhosError('BAD_ARGS', `--gpus names ${r.gpus.length} GPU${r.gpus.length === 1 ? '' : 's'}; pid ${r.pid} uses ${n}`, { remedy: `name ${n} GPUs of ${r.to}, in the order of the process's devices` });
  if (new Set(r.gpus).size !== n) throw new PhosError('BAD_ARGS', `--gpus names a GPU twice (${r.gpus.join(',')})`);
  for (const i of r.gpus) {
    const g = dst.gpus.find((x) => x.index === i);
    if (!g) throw new PhosError('NOT_FOUND', `target ${r.to} has no GPU ${i} (${have})`, { remedy: 'phos nodes lists the GPUs of each node' });
    if (!fits(g)) throw new PhosError('NOT_FOUND', `GPU ${i} of ${r.to} cannot take pid ${r.pid}: it needs a ${model ?? 'matching'} GPU with ${share} B free (${have})`, { remedy: 'pick another GPU or node' });
  }
  return r.gpus;
}

/** A promise's outcome, never a rejection (Promise.allSettled for one). */
function settle<T>(p: Promise<T>): Promise<PromiseSettledResult<T>> {
  return p.then((value) => ({ status: 'fulfilled', value }) as const, (reason: unknown) => ({ status: 'rejected', reason }) as const);
}

export class Coordinator {
  private readonly records = new Map<string, MigrationRecord>();

  private constructor(
    readonly opts: CompiledCoordinatorOptions,
    private readonly bus: Bus,
    private readonly nodes: NodeRegistry,
    private readonly processes: KvStore,
    private readonly migrations: KvStore,
    private readonly log: Logger,
    private readonly telemetry: Telemetry,
  ) {}

  /** Connects to NATS, opens the KV buckets, settles leftovers and starts serving. */
  static async start(options: CoordinatorOptions, log: Logger): Promise<Coordinator> {
    const opts = compileCoordinatorOptions(options);
    const bus = await openBus(opts.natsUrl, 'phos-coordinator');
    const [nodesKv, processes, migrations] = await Promise.all([bus.kv(buckets.nodes), bus.kv(buckets.processes), bus.kv(buckets.migrations)]);
    const c = new Coordinator(opts, bus, new NodeRegistry(bus, nodesKv, opts, log.child({ component: 'nodes' })), processes, migrations, log, initTelemetry({ otlpEndpoint: opts.otlpEndpoint }));
    await c.settleLeftovers();
    c.nodes.start();
    c.serve();
    await bus.flush();
    log.info({ nats: opts.natsUrl }, 'coordinator started');
    return c;
  }

  async stop(): Promise<void> {
    await this.telemetry.shutdown().catch((err: unknown) => this.log.warn({ err }, 'telemetry shutdown failed'));
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
  async validate(r: Message<'migrate-request'>): Promise<ProcessRecord & { targetGpus: number[] }> {
    if (r.from === r.to) throw new PhosError('BAD_ARGS', `pid ${r.pid} is already on ${r.to}`, { remedy: 'name another node with --to' });
    const [src, dst] = await Promise.all([this.nodes.get(r.from), this.nodes.get(r.to)]);
    if (!src) throw new PhosError('NOT_FOUND', `source node ${r.from} is not registered`, { remedy: 'phos nodes' });
    if (!dst) throw new PhosError('NOT_FOUND', `target node ${r.to} is not registered`, { remedy: 'phos nodes' });
    if (!src.alive) throw new PhosError('AGENT_UNAVAILABLE', `source node ${r.from} is down (no heartbeat since ${new Date(src.lastSeen).toISOString()})`);
    if (!dst.alive) throw new PhosError('AGENT_UNAVAILABLE', `target node ${r.to} is down (no heartbeat since ${new Date(dst.lastSeen).toISOString()})`, { remedy: 'start its agent, or pick another node (phos nodes)' });
    const proc = (await this.processes.get('process-record', `${r.from}.${r.pid}`))?.value;
    if (!proc) throw new PhosError('NOT_MANAGED', `pid ${r.pid} is not a phos-managed process on ${r.from}`, { remedy: `start it with phos run on ${r.from}; list managed processes with phos ps` });
    const targetGpus = pickGpus(r, proc, src, dst);
    const busy = (await this.listMigrations()).find((m) => m.pid === r.pid && m.from === r.from && !isTerminal(m.phase));
    if (busy) throw new PhosError('ILLEGAL_STATE', `pid ${r.pid} on ${r.from} is already migrating (${busy.id}, ${busy.phase})`, { remedy: `phos migrate cancel ${busy.id}` });
    return { ...proc, targetGpus };
  }

  async migrate(r: Message<'migrate-request'>): Promise<Message<'migrate-accepted'>> {
    const proc = await this.validate(r);
    const id = `mig-${randomUUID().slice(0, 8)}`;
    const rec = await MigrationRecord.create(this.migrations, this.bus, this.log, {
      id, pid: r.pid, from: r.from, to: r.to, bytesTotal: proc.gpuBytes, bytesSent: 0, bytesRemaining: proc.gpuBytes,
      dirtyBytesPerSec: 0, downtimeMs: null, error: null,
    });
    rec.telemetry = this.telemetry.migration(id, { pid: r.pid, from: r.from, to: r.to });
    this.records.set(id, rec);
    void this.run(rec, r, proc);
    return { v: PROTO_VERSION, id };
  }

  private ask<T>(node: string, verb: string, type: Parameters<Bus['request']>[1], body: Parameters<Bus['request']>[2], timeoutMs: number): Promise<T> {
    return this.bus.request(subjects.agent(node, verb), type, body, timeoutMs) as Promise<T>;
  }

  /** Tells both agents how a migration ended; the source's error (if any) says it could not do its part. */
  private async end(rec: MigrationRecord, outcome: 'commit' | 'abort'): Promise<PhosError | null> {
    const { id, from, to } = rec.state;
    const body = { v: PROTO_VERSION, id, outcome } as const;
    const toSource = () => settle(this.ask(from, 'migration-end', 'migration-end', body, this.opts.restoreTimeoutMs));
    const toTarget = () => settle(this.ask(to, 'migration-end', 'migration-end', body, this.opts.agentTimeoutMs));
    // An abort ends the target's copy (a post-copy's running app) before the source takes the app back.
    const [dst, src] = outcome === 'abort' ? [await toTarget(), await toSource()] : await Promise.all([toTarget(), toSource()]);
    if (dst.status === 'rejected') this.log.warn({ migrationId: id, err: dst.reason as unknown }, `target ${to} did not take the ${outcome}`);
    if (src.status === 'rejected') {
      this.log.error({ migrationId: id, err: src.reason as unknown }, `source ${from} did not take the ${outcome}`);
      return toPhosError(src.reason);
    }
    return null;
  }

  /**
   * Drives a migration through its phases by asking the agents: the target opens a receiver, the source
   * pre-copies, the source cuts over (the app ends there), the target restores, both commit. Any failure
   * before the target released the app aborts both: the source thaws (or restores its dumped app from its
   * kept memory) and the migration ends rolled-back; if even that fails it ends failed, saying so.
   */
  private async run(rec: MigrationRecord, r: Message<'migrate-request'>, proc: ProcessRecord & { targetGpus: number[] }): Promise<void> {
    const id = rec.state.id;
    const deadline = Date.now() + r.timeoutMs;
    const left = () => Math.max(1000, deadline - Date.now());
    const timer = setTimeout(() => {
      void this.abort(rec, new PhosError('TIMEOUT', `migration ${id} did not finish within ${r.timeoutMs} ms`, { remedy: 'raise --timeout or --bandwidth, or migrate when the app writes less' }));
    }, r.timeoutMs);
    const progress = this.bus.listen(subjects.migrationProgress(id), 'migration-progress', (p) => {
      if (rec.state.phase !== 'pre-copy') return;
      rec.progress({ bytesTotal: Math.max(rec.state.bytesTotal, p.bytesTotal), bytesSent: p.bytesSent, bytesRemaining: p.bytesRemaining, dirtyBytesPerSec: p.dirtyBytesPerSec })
        .catch((err: unknown) => this.log.debug({ err, migrationId: id }, 'progress not recorded'));
    }, () => undefined);
    let released = false;
    let postcopying = false;
    // A node that stops heartbeating ends the migration at once (its requests would only time out later).
    const watch = setInterval(() => {
      void Promise.all([this.nodes.get(r.from), this.nodes.get(r.to)]).then(([src, dst]) => {
        const down = [src, dst].find((n) => n && !n.alive);
        if (down && (!released || postcopying) && !isTerminal(rec.state.phase)) {
          void this.abort(rec, new PhosError('AGENT_UNAVAILABLE', `node ${down.node} stopped heartbeating`, { remedy: `check the agent on ${down.node} (phos nodes)` }));
        }
      }).catch(() => undefined);
    }, this.opts.heartbeatMs);
    try {
      await rec.transition('preparing-target', 'accepted');
      const ready = await this.ask<Message<'target-ready'>>(r.to, 'prepare-target', 'prepare-target',
        { v: PROTO_VERSION, id, pid: r.pid, from: r.from, job: proc.job, gpuBytes: proc.gpuBytes, streams: this.opts.streams, gpus: proc.targetGpus }, this.opts.agentTimeoutMs);
      await rec.transition('pre-copy', `target ${r.to} receives on ${ready.host}:${ready.port}`);
      const pc = await this.ask<Message<'precopy-result'>>(r.from, 'pre-copy', 'precopy-request', {
        v: PROTO_VERSION, id, pid: r.pid, to: r.to, host: ready.host, port: ready.port, streams: ready.streams,
        bandwidthBytesPerSec: r.bandwidthBytesPerSec, maxDowntimeMs: r.maxDowntimeMs, mode: r.mode,
      }, left());
      await rec.transition('cutover', pc.converged ? `pre-copy converged after ${pc.rounds} rounds (${pc.dirtyBytes} B dirty)` : `pre-copy stopped converging after ${pc.rounds} rounds; cutover sends the last ${pc.dirtyBytes} B`,
        { bytesSent: pc.bytesSent, bytesRemaining: pc.dirtyBytes });
      const t0 = performance.now();
      const cut = await this.ask<Message<'cutover-result'>>(r.from, 'cutover', 'migration-ref', { v: PROTO_VERSION, id }, this.opts.restoreTimeoutMs);
      await rec.transition('restoring', `source dumped: frozen ${cut.freezeMs.toFixed(0)} ms, last ${cut.finalBytes} B sent`, { bytesSent: pc.bytesSent + cut.finalBytes, bytesRemaining: 0, bytesInDowntime: cut.finalBytes });
      const post = cut.postcopyChunks ?? 0;
      postcopying = post > 0;
      const res = await this.ask<Message<'restore-migrated-result'>>(r.to, 'restore-migrated', 'restore-migrated', { v: PROTO_VERSION, id, manifest: cut.manifest, postcopy: post }, this.opts.restoreTimeoutMs);
      released = true;
      const downtimeMs = performance.now() - t0;
      if (postcopying) {
        // The app runs on the target; the chunks it dirtied last follow, each let through libphos's gate as
        // it arrives. Until the last one is in, the source keeps its copy: a failure here rolls back to it.
        await rec.transition('post-copy', `pid ${res.pid} runs on ${r.to}; ${post} chunks (${cut.postcopyBytes ?? 0} B) follow`, { downtimeMs, bytesRemaining: cut.postcopyBytes ?? 0 });
        const [sent] = await Promise.all([
          this.ask<Message<'postcopy-result'>>(r.from, 'postcopy-send', 'migration-ref', { v: PROTO_VERSION, id }, left()),
          this.ask<Message<'postcopy-result'>>(r.to, 'postcopy-wait', 'migration-ref', { v: PROTO_VERSION, id }, left()),
        ]);
        postcopying = false;
        await rec.transition('succeeded', `pid ${res.pid} runs on ${r.to}; post-copy sent ${sent.bytes} B in ${sent.ms.toFixed(0)} ms, ${sent.demanded ?? 0} chunks ahead on the app's demand`, { bytesSent: rec.state.bytesSent + sent.bytes, bytesRemaining: 0 });
      } else {
        await rec.transition('succeeded', `pid ${res.pid} runs on ${r.to}`, { downtimeMs });
      }
      const e = await this.end(rec, 'commit');
      if (e) this.log.warn({ migrationId: id, err: e }, 'the source did not release its copy; it holds memory until its agent restarts');
    } catch (err) {
      const e = toPhosError(err);
      if (!released || postcopying) await this.abort(rec, e);
      else this.log.error({ err: e, migrationId: id }, 'migration failed after the target took the app');
    } finally {
      clearTimeout(timer);
      clearInterval(watch);
      progress.unsubscribe();
      this.records.delete(id);
    }
  }

  /** Ends a migration whose app the target has not released: both agents abort; the source runs the app. */
  private async abort(rec: MigrationRecord, e: PhosError, to: 'rolled-back' | 'cancelled' = 'rolled-back'): Promise<void> {
    if (rec.aborting) return;
    rec.aborting = true;
    const stage = rec.state.phase;
    // Before the cutover the app never stopped: a source that cannot be reached still runs it. From the
    // cutover on, the source must take the app back (thaw, or restore it from its kept memory).
    const dumped = stage === 'cutover' || stage === 'restoring' || stage === 'post-copy';
    const endErr = await this.end(rec, 'abort');
    const srcErr = dumped ? endErr : null;
    if (isTerminal(rec.state.phase)) return;
    const message = srcErr
      ? `${e.message}; and the source could not take the app back: ${srcErr.message}`
      : to === 'cancelled' ? `cancelled during ${stage}; the source keeps running` : `${e.message} (during ${stage}); the source keeps running`;
    const error = to === 'cancelled' && !srcErr ? null : {
      code: srcErr?.code ?? e.code, message,
      remedy: srcErr ? `the app's CPU image and kept memory stay on ${rec.state.from}; see its agent log for migration ${rec.state.id}` : e.remedy,
    };
    await rec.transition(srcErr ? 'failed' : to, message, { error })
      .catch((e2: unknown) => this.log.error({ err: e2, migrationId: rec.state.id }, 'could not record migration end'));
  }

  async cancel(id: string): Promise<MigrationState> {
    const cur = await this.migrations.get('migration-state', id);
    if (!cur) throw new PhosError('NOT_FOUND', `no migration ${id}`, { remedy: 'phos migrations' });
    if (isTerminal(cur.value.phase)) throw new PhosError('ILLEGAL_STATE', `migration ${id} already ended (${cur.value.phase})`);
    if (!['pending', 'preparing-target', 'pre-copy'].includes(cur.value.phase)) {
      throw new PhosError('ILLEGAL_STATE', `migration ${id} is in ${cur.value.phase}: past the point where it can be cancelled`, { remedy: 'wait for it to end; a failure still leaves exactly one copy running' });
    }
    const rec = this.records.get(id);
    if (rec) {
      await this.abort(rec, new PhosError('CANCELLED', 'cancelled by request'), 'cancelled');
      return rec.state;
    }
    // Not driven here (a restart left it): end the record; agents drop migrations they do not know.
    const other = new MigrationRecord(this.migrations, this.bus, this.log, cur.value, cur.revision);
    await other.transition('cancelled', 'cancelled by request');
    return other.state;
  }

  /**
   * A restarted coordinator finishes what a previous one left open, from KV: a migration caught while the
   * target restored is settled by whether the target's agent now publishes the process (it runs there:
   * succeeded, the source lets go of its copy); every other open one is rolled back (the source keeps or
   * takes back the app). The agents are told in the background.
   */
  private async settleLeftovers(): Promise<void> {
    for (const m of await this.listMigrations()) {
      if (isTerminal(m.phase)) continue;
      const cur = await this.migrations.get('migration-state', m.id);
      if (!cur) continue;
      const rec = new MigrationRecord(this.migrations, this.bus, this.log, cur.value, cur.revision);
      const landed = m.phase === 'restoring' && (await this.processes.get('process-record', `${m.to}.${m.pid}`)) !== null;
      if (!landed && (m.phase === 'cutover' || m.phase === 'restoring' || m.phase === 'post-copy')) {
        // The source dumped the app (or was doing so): it must take it back before this is rolled back.
        void this.abort(rec, new PhosError('INTERNAL', `coordinator restarted during ${m.phase}`, { remedy: 'retry the migration' }));
        continue;
      }
      const to = landed ? 'succeeded' : m.phase === 'post-copy' ? 'failed' : 'rolled-back';
      const message = landed ? `coordinator restarted during restoring; pid ${m.pid} runs on ${m.to}`
        : `coordinator restarted during ${m.phase}; ${to === 'rolled-back' ? 'the source keeps running' : 'the source keeps its copy until the target is verified'}`;
      await rec.transition(to, message, landed ? {} : { error: { code: 'INTERNAL', message, remedy: 'retry the migration' } })
        .catch((err: unknown) => this.log.error({ err, migrationId: m.id }, 'could not settle migration'));
      if (to !== 'failed') void this.end(rec, landed ? 'commit' : 'abort');
    }
  }
}
