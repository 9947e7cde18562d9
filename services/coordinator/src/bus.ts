// The coordinator's one edge to NATS: connection, request/reply with proto's codec and reply envelope,
// subscriptions, and JetStream KV buckets. Nothing else in the coordinator imports a NATS module, and
// NATS failures leave here as PhosError (NATS_UNAVAILABLE / TIMEOUT).
//
// Listing a bucket answers from an in-memory mirror that a KV watch keeps current, not from kv.keys():
// kv.keys() reads an ordered consumer until it has drained, and while keys are being written it may not
// drain for a long time, so listings (phos nodes, phos migrations) timed out under load.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV, type KvWatchEntry } from '@nats-io/kv';
import { fromNatsError, requestReply, serveRequests } from '../../../common/src/index.ts';
import { PhosError, decodeMessage, encodeMessage, toPhosError, type Message, type MessageType } from '../../../proto/src/index.ts';

export interface Bus {
  readonly nc: NatsConnection;
  /** Serves request/reply on `subject`: the handler's value becomes { ok: true, body }, a throw { ok: false, err }. */
  serve<T extends MessageType>(subject: string, type: T, handler: (req: Message<T>) => Promise<unknown>): void;
  /** Subscribes to published messages of one type; undecodable ones are passed to onBad. */
  listen<T extends MessageType>(subject: string, type: T, handler: (m: Message<T>) => void, onBad: (e: PhosError) => void): { unsubscribe(): void };
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
  /** The keys that hold a value, oldest write first; reflects every write acknowledged before the call. */
  keys(): Promise<string[]>;
  /** Every key's value and revision, as keys() sees them (one snapshot, no per-key round trips). */
  entries<T extends MessageType>(type: T): Promise<{ key: string; value: Message<T>; revision: number }[]>;
}

// NATS failures as PhosError: one mapping for the coordinator and the agents (common/src/nats-rpc.ts).
export { fromNatsError };

export async function openBus(servers: string, name: string): Promise<Bus> {
  let nc: NatsConnection;
  try {
    nc = await connect({ servers, name, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  } catch (err) {
    throw new PhosError('NATS_UNAVAILABLE', `cannot reach NATS at ${servers}: ${(err as Error).message}`, { cause: err });
  }
  const kvm = new Kvm(nc);
  const mirrors: KvMirror[] = [];
  return {
    nc,
    serve(subject, type, handler) {
      serveRequests(nc, subject, type, handler);
    },
    listen(subject, type, handler, onBad) {
      return nc.subscribe(subject, {
        callback: (_e, m) => {
          try { handler(decodeMessage(type, m.data)); } catch (err) { onBad(toPhosError(err, 'BAD_FRAME')); }
        },
      });
    },
    request(subject, type, body, timeoutMs = 5000) {
      return requestReply(nc, subject, type, body, timeoutMs);
    },
    publish(subject, type, body) {
      nc.publish(subject, encodeMessage(type, body));
    },
    async kv(bucket) {
      let kv: KV;
      try {
        kv = await kvm.create(bucket, { history: 1 });
      } catch (err) {
        throw fromNatsError(err, `kv open ${bucket}`);
      }
      const mirror = new KvMirror(kv, bucket, () => nc.isClosed());
      await mirror.start();
      mirrors.push(mirror);
      return kvStore(kv, bucket, mirror);
    },
    async flush() {
      await nc.flush();
    },
    async close() {
      for (const m of mirrors.splice(0)) m.close();
      await nc.drain().catch(() => nc.close());
    },
  };
}

type KvWatcher = Awaited<ReturnType<KV['watch']>>;

/** How long a listing waits for the watch to deliver writes the server already holds. */
const MIRROR_SYNC_MS = 10_000;

/**
 * A bucket's current values, kept by a KV watch: first every key's last value, then each write as it
 * happens (DEL and PURGE remove the key). A revision is the bucket stream's sequence number, so the
 * mirror is current up to `applied`. A watch that ends while the bus is open is reopened where it left off.
 */
class KvMirror {
  private readonly live = new Map<string, { value: Uint8Array; revision: number }>();
  private applied = 0;
  private watcher: KvWatcher | null = null;
  private closed = false;
  private readonly waiters = new Set<{ revision: number; done: (err?: PhosError) => void }>();

  constructor(private readonly kv: KV, private readonly bucket: string, private readonly connectionClosed: () => boolean) {}

  async start(): Promise<void> {
    try {
      this.watcher = await this.kv.watch();
    } catch (err) {
      throw fromNatsError(err, `kv watch ${this.bucket}`);
    }
    void this.run(this.watcher);
  }

  close(): void {
    this.closed = true;
    this.watcher?.stop();
    this.watcher = null;
    for (const w of this.waiters) w.done(new PhosError('NATS_UNAVAILABLE', `kv ${this.bucket}: the bus is closed`));
    this.waiters.clear();
  }

  private async run(first: KvWatcher): Promise<void> {
    let w: KvWatcher | null = first;
    while (!this.closed && !this.connectionClosed()) {
      if (!w) {
        await new Promise((r) => setTimeout(r, 250));
        if (this.closed) break;
        w = await this.kv.watch(this.applied > 0 ? { resumeFromRevision: this.applied + 1 } : {}).catch(() => null);
        if (!w) continue;
        if (this.closed) { w.stop(); break; }
        this.watcher = w;
      }
      try {
        for await (const e of w) this.apply(e);
      } catch { /* the watch failed: reopen it below */ }
      w = null;
    }
  }

  private apply(e: KvWatchEntry): void {
    if (e.revision <= this.applied) return; // already seen (a reopened watch may repeat some)
    this.applied = e.revision;
    if (e.operation === 'PUT') this.live.set(e.key, { value: e.value.slice(), revision: e.revision });
    else this.live.delete(e.key);
    for (const w of this.waiters) if (w.revision <= this.applied) w.done();
  }

  /** Waits until the mirror holds every write the server had acknowledged when this was called. */
  async sync(): Promise<void> {
    let state: { messages: number; last_seq: number };
    try {
      state = (await this.kv.status()).streamInfo.state;
    } catch (err) {
      throw fromNatsError(err, `kv status ${this.bucket}`);
    }
    if (this.closed) throw new PhosError('NATS_UNAVAILABLE', `kv ${this.bucket}: the bus is closed`);
    // The stream's last message is the newest write of its key, so the watch delivers it (an empty
    // stream has nothing left to deliver).
    if (state.messages === 0 || this.applied >= state.last_seq) return;
    const target = state.last_seq;
    await new Promise<void>((resolve, reject) => {
      const w = {
        revision: target,
        done: (err?: PhosError) => {
          clearTimeout(timer);
          this.waiters.delete(w);
          if (err) reject(err); else resolve();
        },
      };
      const timer = setTimeout(() => w.done(new PhosError('TIMEOUT', `kv ${this.bucket}: the watch did not reach revision ${target} within ${MIRROR_SYNC_MS} ms (at ${this.applied})`)), MIRROR_SYNC_MS);
      this.waiters.add(w);
    });
  }

  /** Live entries, oldest write first (the order kv.keys() gave). */
  snapshot(): { key: string; value: Uint8Array; revision: number }[] {
    return [...this.live].map(([key, e]) => ({ key, ...e })).sort((a, b) => a.revision - b.revision);
  }
}

function kvStore(kv: KV, bucket: string, mirror: KvMirror): KvStore {
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
      await mirror.sync();
      return mirror.snapshot().map((e) => e.key);
    },
    async entries(type) {
      await mirror.sync();
      return mirror.snapshot().filter((e) => e.value.length > 0).map((e) => ({ key: e.key, value: decodeMessage(type, e.value), revision: e.revision }));
    },
  };
}

