// The agent's membership in the mesh (only when the config names a NATS server): registers the node and
// its GPUs with the coordinator, heartbeats, and keeps the KV `processes` bucket in step with the processes
// this agent manages, so the coordinator can validate migrations. The one module here that talks NATS.
import { hostname } from 'node:os';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { requestReply, serveRequests, type Logger } from '../../../common/src/index.ts';
import { probeGpus } from './gpu-probe.ts';
import { PROTO_VERSION, PhosError, buckets, decodeMessage, encodeMessage, subjects, type Message, type MessageType } from '../../../proto/src/index.ts';

export const HEARTBEAT_MS = 2000;

export interface MeshProcess { pid: number; job: string; keptBytes: number; /** GPUs the process uses. */ devices: number }
type Gpu = Message<'node-register'>['gpus'][number];

export class MeshMember {
  private timer: NodeJS.Timeout | null = null;
  /** KV key -> "bytes/devices" last published for it. */
  private readonly published = new Map<string, string>();

  private constructor(private readonly nc: NatsConnection, private readonly kv: KV, private readonly node: string, private readonly list: () => MeshProcess[], private readonly log: Logger) {}

  /** Connects, registers the node with the coordinator and starts heartbeats. */
  static async join(o: { nats: string; node: string; libcuda: string | null; agentVersion: string; dataAddr: string }, list: () => MeshProcess[], log: Logger, beforeRegister: (m: MeshMember) => void = () => {}): Promise<MeshMember> {
    let nc: NatsConnection;
    try {
      nc = await connect({ servers: o.nats, name: `phos-agent-${o.node}`, maxReconnectAttempts: -1, reconnectTimeWait: 500 });
    } catch (err) {
      throw new PhosError('NATS_UNAVAILABLE', `agent ${o.node}: cannot reach NATS at ${o.nats}: ${(err as Error).message}`, { remedy: 'start nats-server, or fix nats: in the agent config' });
    }
    const kv = await new Kvm(nc).create(buckets.processes, { history: 1 });
    const m = new MeshMember(nc, kv, o.node, list, log);
    const probe = await probeGpus(o.libcuda);
    const gpus: Gpu[] = probe.gpus.map((d) => ({ index: d.index, uuid: d.uuid, model: d.name, memBytes: d.totalBytes, freeBytes: d.freeBytes }));
    const { driverVersion, simulated } = probe;
    if (probe.error) log.warn({ reason: probe.error }, 'no GPU found: this node registers without GPUs and cannot take migrations');
    // Verbs are served before the node is announced: the coordinator may ask at once.
    beforeRegister(m);
    await nc.flush();
    const body: Message<'node-register'> = { v: PROTO_VERSION, node: o.node, host: hostname(), dataAddr: o.dataAddr, gpus, simulated, driverVersion, agentVersion: o.agentVersion };
    m.registration = body;
    await m.register();
    m.timer = setInterval(() => { m.beat().catch((err: unknown) => log.debug({ err }, 'heartbeat failed')); }, HEARTBEAT_MS);
    await m.beat();
    log.info({ nats: o.nats, gpus: gpus.length }, 'joined the mesh');
    return m;
  }

  private registration: Message<'node-register'> | null = null;
  private registered = false;

  /** Registers the node with the coordinator; until one takes it, every heartbeat tries again. */
  private async register(): Promise<void> {
    if (this.registered || !this.registration) return;
    try {
      await requestReply(this.nc, subjects.coord('register'), 'node-register', this.registration, 5000);
      this.registered = true;
    } catch (err) {
      // No coordinator yet is not fatal: heartbeats and process records still flow.
      this.log.warn({ err: (err as Error).message }, 'coordinator did not take the registration; retrying with the next heartbeat');
    }
  }

  /** Publishes a heartbeat and brings the KV process records in line with the managed processes. */
  async beat(): Promise<void> {
    await this.register();
    const procs = this.list();
    this.nc.publish(subjects.heartbeat(this.node), encodeMessage('heartbeat', { v: PROTO_VERSION, node: this.node, at: Date.now(), processes: procs.length }));
    const live = new Set<string>();
    for (const p of procs) {
      const key = `${this.node}.${p.pid}`;
      live.add(key);
      const stamp = `${p.keptBytes}/${p.devices}`;
      if (this.published.get(key) === stamp) continue;
      await this.kv.put(key, encodeMessage('process-record', { v: PROTO_VERSION, node: this.node, pid: p.pid, job: p.job, device: 0, devices: p.devices, gpuBytes: p.keptBytes, startedAt: Date.now() }));
      this.published.set(key, stamp);
    }
    for (const key of [...this.published.keys()]) {
      if (live.has(key)) continue;
      await this.kv.delete(key);
      this.published.delete(key);
    }
  }

  /** Serves `agent.<this node>.<verb>`: the handler's value is the reply body, a throw the reply error. */
  serve<T extends MessageType>(verb: string, type: T, handler: (m: Message<T>) => Promise<unknown>): void {
    serveRequests(this.nc, subjects.agent(this.node, verb), type, handler, (err) => this.log.warn({ verb, err }, 'mesh request failed'));
  }

  /** Asks another agent (`agent.<node>.<verb>`); its error comes back as the PhosError it threw. */
  request<T extends MessageType>(node: string, verb: string, type: T, body: Message<T>, timeoutMs = 10_000): Promise<unknown> {
    return requestReply(this.nc, subjects.agent(node, verb), type, body, timeoutMs);
  }

  publish<T extends MessageType>(subject: string, type: T, body: Message<T>): void {
    this.nc.publish(subject, encodeMessage(type, body));
  }

  /** Calls `handler` with each valid message on `subject` (others are logged and dropped); returns the unsubscribe. */
  subscribe<T extends MessageType>(subject: string, type: T, handler: (m: Message<T>) => void): () => void {
    const sub = this.nc.subscribe(subject, {
      callback: (_e, msg) => {
        try {
          handler(decodeMessage(type, msg.data));
        } catch (err) {
          this.log.warn({ subject, err }, 'dropped a message that does not decode');
        }
      },
    });
    return () => { if (!sub.isClosed()) sub.unsubscribe(); };
  }

  /** Resolves once the server has our subscriptions (so a request right after join() finds them). */
  async flush(): Promise<void> {
    await this.nc.flush();
  }

  async leave(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const key of this.published.keys()) await this.kv.delete(key).catch(() => undefined);
    await this.nc.drain().catch(() => this.nc.close());
  }
}

