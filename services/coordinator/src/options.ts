// Coordinator options: user-facing fields with defaults, compiled once into a fully resolved form.
import { PhosError } from '../../../proto/src/index.ts';

export const DEFAULT_HEARTBEAT_MS = 2000;
export const DEFAULT_MISSED_HEARTBEATS = 3;
export const DEFAULT_AGENT_TIMEOUT_MS = 10_000;
/** A cutover, a restore or a source taking its app back (CRIU and driver work): how long to wait for it. */
export const DEFAULT_RESTORE_TIMEOUT_MS = 180_000;
/** Parallel TCP streams per migration transport session. */
export const DEFAULT_STREAMS = 4;

export interface CoordinatorOptions {
  /** NATS server URL(s). @default process.env.NATS_URL ?? 'nats://127.0.0.1:4222' */
  natsUrl?: string;
  /** How often agents heartbeat. @default DEFAULT_HEARTBEAT_MS */
  heartbeatMs?: number;
  /** Heartbeats a node may miss before it is marked down. @default DEFAULT_MISSED_HEARTBEATS */
  missedHeartbeats?: number;
  /** How long the coordinator waits for an agent's answer. @default DEFAULT_AGENT_TIMEOUT_MS */
  agentTimeoutMs?: number;
  /** @default DEFAULT_RESTORE_TIMEOUT_MS */
  restoreTimeoutMs?: number;
  /** @default DEFAULT_STREAMS */
  streams?: number;
  /** OTLP/HTTP base URL for traces and metrics; null: no export. @default process.env.PHOS_OTLP_ENDPOINT ?? null */
  otlpEndpoint?: string | null;
}

export type CompiledCoordinatorOptions = Required<CoordinatorOptions>;

export function compileCoordinatorOptions(o: CoordinatorOptions = {}): CompiledCoordinatorOptions {
  const c: CompiledCoordinatorOptions = {
    natsUrl: o.natsUrl ?? process.env.NATS_URL ?? 'nats://127.0.0.1:4222',
    heartbeatMs: o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
    missedHeartbeats: o.missedHeartbeats ?? DEFAULT_MISSED_HEARTBEATS,
    agentTimeoutMs: o.agentTimeoutMs ?? DEFAULT_AGENT_TIMEOUT_MS,
    restoreTimeoutMs: o.restoreTimeoutMs ?? DEFAULT_RESTORE_TIMEOUT_MS,
    streams: o.streams ?? DEFAULT_STREAMS,
    // An explicit null turns export off even when the environment names an endpoint.
    otlpEndpoint: o.otlpEndpoint === undefined ? process.env.PHOS_OTLP_ENDPOINT || null : o.otlpEndpoint || null,
  };
  for (const k of ['heartbeatMs', 'missedHeartbeats', 'agentTimeoutMs', 'restoreTimeoutMs', 'streams'] as const) {
    if (!Number.isSafeInteger(c[k]) || c[k] <= 0) throw new PhosError('BAD_ARGS', `coordinator option ${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.otlpEndpoint !== null && !/^https?:\/\/./.test(c.otlpEndpoint)) throw new PhosError('BAD_ARGS', `coordinator option otlpEndpoint must be an http(s) URL, got ${c.otlpEndpoint}`);
  return c;
}
