// msgpack encoding for every wire message, with validation on decode. Decoding never throws anything
// but a PhosError (BAD_FRAME or PROTO_VERSION) that says what was wrong and where.
import { Packr } from 'msgpackr';
import { PhosError } from './errors.ts';
import { FRAME_SCHEMAS, type Frame, type FrameType } from './frames.ts';
import { MESSAGE_SCHEMAS, REPLY_SCHEMA, type Message, type MessageType, type Reply } from './messages.ts';
import { check, type Schema } from './schema.ts';
import { PROTO_VERSION } from './version.ts';

// Plain msgpack only (no msgpackr record extension), so the small C++ codec in libphos reads it too.
// 64-bit integers decode as numbers: every field phos sends fits in 2^53 (addresses are 47-bit).
const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'number', mapsAsObjects: true, variableMapSize: true });

export function encode(value: unknown): Uint8Array {
  return packr.pack(widenIntegers(value));
}

// msgpackr writes JS numbers beyond 32 bits as float64; a C++ reader wants uint64/int64. BigInt makes
// msgpackr emit the integer forms, and decoding turns them back into plain numbers.
function widenIntegers(value: unknown): unknown {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && (value > 0xffffffff || value < -0x80000000) ? BigInt(value) : value;
  }
  if (Array.isArray(value)) return value.map(widenIntegers);
  if (typeof value === 'object' && value !== null && !(value instanceof Uint8Array)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = widenIntegers(v);
    return out;
  }
  return value;
}

function decodeRaw(buf: Uint8Array, what: string): unknown {
  if (!(buf instanceof Uint8Array) || buf.length === 0) throw new PhosError('BAD_FRAME', `${what}: empty message`);
  try {
    return packr.unpack(buf);
  } catch (err) {
    throw new PhosError('BAD_FRAME', `${what}: not valid msgpack (${(err as Error).message})`, { cause: err, details: { bytes: buf.length } });
  }
}

function validate<T>(schema: Schema, value: unknown, what: string): T {
  const v = (value as { v?: unknown } | null)?.v;
  if (typeof v === 'number' && v !== PROTO_VERSION) {
    throw new PhosError('PROTO_VERSION', `${what}: peer speaks protocol v${v}, this side v${PROTO_VERSION}`, { details: { peer: v, ours: PROTO_VERSION } });
  }
  const problem = check(schema, value);
  if (problem) throw new PhosError('BAD_FRAME', `${what}: ${problem}`);
  return value as T;
}

/** Validates and encodes a frame for the agent socket. */
export function encodeFrame<T extends FrameType>(frame: Frame<T>): Uint8Array {
  const t = (frame as unknown as { t: T }).t;
  return encode(validate(FRAME_SCHEMAS[t], frame, `frame '${t}'`));
}

/** Decodes one agent-socket packet into a validated frame. */
export function decodeFrame(buf: Uint8Array): Frame {
  const raw = decodeRaw(buf, 'frame');
  const t = (raw as { t?: unknown } | null)?.t;
  if (typeof t !== 'string' || !Object.hasOwn(FRAME_SCHEMAS, t)) {
    throw new PhosError('BAD_FRAME', `frame: unknown type ${JSON.stringify(t) ?? 'nothing'}`);
  }
  return validate(FRAME_SCHEMAS[t as FrameType], raw, `frame '${t}'`);
}

export function encodeMessage<T extends MessageType>(type: T, body: Message<T>): Uint8Array {
  return encode(validate(MESSAGE_SCHEMAS[type], body, `message '${type}'`));
}

export function decodeMessage<T extends MessageType>(type: T, buf: Uint8Array): Message<T> {
  return validate(MESSAGE_SCHEMAS[type], decodeRaw(buf, `message '${type}'`), `message '${type}'`);
}

export function encodeReply(reply: Reply): Uint8Array {
  return encode(validate(REPLY_SCHEMA, reply, 'reply'));
}

export function decodeReply(buf: Uint8Array): Reply {
  return validate(REPLY_SCHEMA, decodeRaw(buf, 'reply'), 'reply');
}
