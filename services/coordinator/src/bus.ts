// The coordinator's one edge to NATS: connection, request/reply with proto's codec and reply envelope,
// subscriptions, and JetStream KV buckets. Nothing else in the coordinator imports a NATS module, and
// NATS failures leave here as PhosError (NATS_UNAVAILABLE / TIMEOUT).
import { connect, type NatsConnection, type Msg } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import {
  PROTO_VERSION, PhosError, decodeMessage, decodeReply, encodeMessage, encodeReply, toPhosError,
  type Message, type MessageType,
} from '../../../proto/src/index.ts';

export interface Bus {
  readonly nc: NatsConnection;
  /** Serves request/reply on `subject`: the handler's value becomes { ok: true, body }, a throw { ok: false, err }. */
  serve<T extends MessageType>(subject: string, type: T, handler: (req: Message<T>) => Promise<unknown>): void;
  /** Subscribes to published messages of one type; undecodable ones are passed to onBad. */
  listen<T extends MessageType>(subject: string, type: T, handler: (m: Message<T>) => void, onBad: (e: PhosError) => void): void;
  request<T extends MessageType>(subject: string, type: T, body: Message<T>, timeoutMs?: number): Promise<unknown>;
  publish<T extends MessageType>(subject: string, type: T, body: Message<T>): void;
  kv(bucket: string): Promise<KvStore>;
  /** Resolves once the server has seen every subscription made so far. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** A KV bucket holding msgpack records with revision checks (compare-and-set). */
export interface KvStore {
  get<T extends MessageType>(type: T, key: string): Promise<{ value: Message<T>; revision: number } | null>;
  /** Creates the key; fails with ILLEGAL_STATE if it exists. */
  create<T extends MessageType>(type: T, key: string, value: Message<T>): Promise<number>;
  /** Writes only if the key is still at `revision`; else ILLEGAL_STATE (someone else changed it). */
  update<T extends MessageType>(type: T, key: string, value: Message<T>, revision: number): Promise<number>;
  put<T extends MessageType>(type: T, key: string, value: Message<T>): Promise<number>;
  keys(): Promise<string[]>;
}

export function fromNatsError(err: unknown, what: string): PhosError {
  if (err instanceof PhosError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  if (/timeout/i.test(msg)) return new PhosError('TIMEOUT', `${what}: no answer in time (${msg})`, { cause: err });
  if (/no responders/i.test(msg)) return new PhosError('AGENT_UNAVAILABLE', `${what}: nobody is listening`, { cause: err });
  return new PhosError('NATS_UNAVAILABLE', `${what}: ${msg}`, { cause: err });
}

export async function openBus(servers: string, name: string): Promise<Bus> {
  let nc: NatsConnection;
  try {
    nc = await connect({ servers, name, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  } catch (err) {
    throw new PhosError('NATS_UNAVAILABLE', `cannot reach NATS at ${servers}: ${(err as Error).message}`, { cause: err });
  }
  const kvm = new Kvm(nc);
  const reply = (m: Msg, body: Uint8Array) => { try { m.respond(body); } catch { /* requester gone */ } };
  return {
    nc,
    serve(subject, type, handler) {
      nc.subscribe(subject, {
        callback: (_e, m) => {
          void (async () => {
            try {
              const body = await handler(decodeMessage(type, m.data));
              reply(m, encodeReply({ v: PROTO_VERSION, ok: true, body }));
            } catch (err) {
              reply(m, encodeReply({ v: PROTO_VERSION, ok: false, err: toPhosError(err).toWire() }));
            }
          })();
        },
      });
    },
    listen(subject, type, handler, onBad) {
      nc.subscribe(subject, {
        callback: (_e, m) => {
          try { handler(decodeMessage(type, m.data)); } catch (err) { onBad(toPhosError(err, 'BAD_FRAME')); }
        },
      });
    },
    async request(subject, type, body, timeoutMs = 5000) {
      let m: Msg;
      try {
        m = await nc.request(subject, encodeMessage(type, body), { timeout: timeoutMs });
      } catch (err) {
        throw fromNatsError(err, `request ${subject}`);
      }
      const r = decodeReply(m.data);
      if (!r.ok) throw PhosError.fromWire(r.err);
      return r.body;
    },
    publish(subject, type, body) {
      nc.publish(subject, encodeMessage(type, body));
    },
    async kv(bucket) {
      const kv = await kvm.create(bucket, { history: 1 });
      return kvStore(kv, bucket);
    },
    async flush() {
      await nc.flush();
    },
    async close() {
      await nc.drain().catch(() => nc.close());
    },
  };
}

function kvStore(kv: KV, bucket: string): KvStore {
  const conflict = (key: string, err: unknown) => new PhosError('ILLEGAL_STATE', `${bucket}/${key} was changed by someone else`, { cause: err, details: { bucket, key } });
  return {
    async get(type, key) {
      const e = await kv.get(key).catch((err: unknown) => { throw fromNatsError(err, `kv get ${bucket}/${key}`); });
      if (!e || e.operation !== 'PUT' || e.value.length === 0) return null;
      return { value: decodeMessage(type, e.value), revision: e.revision };
    },
    async create(type, key, value) {
      try { return await kv.create(key, encodeMessage(type, value)); } catch (err) { throw conflict(key, err); }
    },
    async update(type, key, value, revision) {
      try { return await kv.update(key, encodeMessage(type, value), revision); } catch (err) { throw conflict(key, err); }
    },
    async put(type, key, value) {
      return kv.put(key, encodeMessage(type, value)).catch((err: unknown) => { throw fromNatsError(err, `kv put ${bucket}/${key}`); });
    },
    async keys() {
      const out: string[] = [];
      for await (const k of await kv.keys()) out.push(k);
      return out;
    },
  };
}

