// Request/reply over NATS with proto's codec and reply envelope, shared by the coordinator's bus and the
// node agent's mesh membership: a served handler's value travels as { ok: true, body }, its throw as
// { ok: false, err } and comes back to the requester as the PhosError that was thrown.
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import {
  PROTO_VERSION, PhosError, decodeMessage, decodeReply, encodeMessage, encodeReply, toPhosError,
  type Message, type MessageType,
} from '../../proto/src/index.ts';

/** A NATS client error as a PhosError: TIMEOUT, AGENT_UNAVAILABLE (no responders) or NATS_UNAVAILABLE. */
export function fromNatsError(err: unknown, what: string): PhosError {
  if (err instanceof PhosError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  if (/timeout/i.test(msg)) return new PhosError('TIMEOUT', `${what}: no answer in time (${msg})`, { cause: err });
  if (/no responders/i.test(msg)) return new PhosError('AGENT_UNAVAILABLE', `${what}: nobody is listening`, { cause: err });
  return new PhosError('NATS_UNAVAILABLE', `${what}: ${msg}`, { cause: err });
}

/** Serves requests on `subject`; `onError` sees each error before it is sent back (for logging). */
export function serveRequests<T extends MessageType>(nc: NatsConnection, subject: string, type: T,
  handler: (req: Message<T>) => Promise<unknown>, onError: (e: PhosError) => void = () => {}): Subscription {
  return nc.subscribe(subject, {
    callback: (_e, m) => {
      void (async () => {
        let reply: Uint8Array;
        try {
          reply = encodeReply({ v: PROTO_VERSION, ok: true, body: await handler(decodeMessage(type, m.data)) });
        } catch (err) {
          const e = toPhosError(err);
          onError(e);
          reply = encodeReply({ v: PROTO_VERSION, ok: false, err: e.toWire() });
        }
        try { m.respond(reply); } catch { /* requester gone */ }
      })();
    },
  });
}

/** One request; resolves with the reply body, rejects with the served error or a fromNatsError one. */
export async function requestReply<T extends MessageType>(nc: NatsConnection, subject: string, type: T, body: Message<T>, timeoutMs: number): Promise<unknown> {
  let data: Uint8Array;
  try {
    data = (await nc.request(subject, encodeMessage(type, body), { timeout: timeoutMs })).data;
  } catch (err) {
    throw fromNatsError(err, `request ${subject}`);
  }
  const r = decodeReply(data);
  if (!r.ok) throw PhosError.fromWire(r.err);
  return r.body;
}
