// The node agent's control API for the local CLI: JSON lines over a unix stream socket (the agent's
// `controlSocket`). The CLI writes one request line; the agent answers with any number of `progress`
// and `log` lines and ends with exactly one `result` or `error` line, then closes the connection.
// Also the `agent` section the agent adds to an image manifest (manifest.json stays proto/manifest.ts's).
import { s, type Infer, type Schema } from './schema.ts';

/** Verbs the control socket answers. Wire strings never change. */
export const CONTROL_VERBS = Object.freeze(['ping', 'run', 'ps', 'logs', 'pre-dump', 'dump', 'restore', 'move-gpu'] as const);
export type ControlVerb = (typeof CONTROL_VERBS)[number];

/** How an image holds the GPU state: `keeper` = gpu/ chunks are the data; `safe` = the CRIU image holds it (driver checkpoint). */
export const IMAGE_PATHS = Object.freeze(['keeper', 'safe'] as const);
export type ImagePath = (typeof IMAGE_PATHS)[number];

/** States of a managed process as the agent reports them (the table lives in the agent's process-machine.ts). */
export const PROCESS_STATES = Object.freeze([
  'running', 'freezing', 'frozen', 'dumping', 'thawing', 'restoring', 'dumped', 'exited', 'failed',
] as const);
export type ProcessStateName = (typeof PROCESS_STATES)[number];

const head = { v: s.uint(), id: s.uint() };
const GPU_MAP_ENTRY = s.object({ from: s.uint(), to: s.uint() });
export type GpuMapEntry = Infer<typeof GPU_MAP_ENTRY>;

export const CONTROL_REQUEST_SCHEMAS = {
  /** Is the agent there? Result: { node, pid, version }. */
  ping: s.object({ ...head, verb: s.literal('ping') }),
  /** Start argv under phos (libphos preloaded, pid from the node's range). Result: ProcessInfo. */
  run: s.object({
    ...head, verb: s.literal('run'), argv: s.array(s.string()), job: s.optional(s.string()),
    cwd: s.optional(s.string()), env: s.optional(s.record(s.string())),
    /** false: start without libphos (the image then always takes the safe path). @default true */
    preload: s.optional(s.bool()),
  }),
  /** Result: { processes: ProcessInfo[] }. */
  ps: s.object({ ...head, verb: s.literal('ps'), all: s.optional(s.bool()) }),
  /** A process's output (ref: pid or job name); `follow` keeps streaming until it ends or the client goes. */
  logs: s.object({ ...head, verb: s.literal('logs'), ref: s.string(), follow: s.optional(s.bool()) }),
  /** Snapshot a running managed process into `dir`; it keeps running. */
  'pre-dump': s.object({ ...head, verb: s.literal('pre-dump'), pid: s.uint(), dir: s.string(), parent: s.optional(s.nullable(s.string())) }),
  /** Dump a managed process into `dir`; it ends once the image is sealed. */
  dump: s.object({ ...head, verb: s.literal('dump'), pid: s.uint(), dir: s.string(), parent: s.optional(s.nullable(s.string())) }),
  /**
   * Restore the image in `dir` on this node. Result: ProcessInfo of the restored process. `gpuMap`: onto
   * other GPUs, image device ordinal `from` -> this node's ordinal `to`; GPUs it does not name go to the
   * ones left over (their own first), so every GPU the process saw is mapped.
   */
  restore: s.object({ ...head, verb: s.literal('restore'), dir: s.string(), gpuMap: s.optional(s.array(GPU_MAP_ENTRY)), verify: s.optional(s.bool()) }),
  /**
   * Move a managed process to another GPU of this node (`phos migrate --to-gpu`): its device 0 goes to this
   * node's GPU `toGpu` (other devices to the GPUs left over). Result: MOVE_RESULT_SCHEMA.
   */
  'move-gpu': s.object({ ...head, verb: s.literal('move-gpu'), pid: s.uint(), toGpu: s.uint() }),
} as const satisfies Record<ControlVerb, Schema>;

export type ControlRequest<V extends ControlVerb = ControlVerb> = V extends ControlVerb ? Infer<(typeof CONTROL_REQUEST_SCHEMAS)[V]> : never;

export const PROCESS_INFO_SCHEMA = s.object({
  pid: s.uint(), job: s.string(), state: s.oneOf(PROCESS_STATES), argv: s.array(s.string()), logPath: s.string(),
  startedAt: s.string(), vaBase: s.uint(),
  /** libphos is connected to the agent (keeper holds its memory). */
  linked: s.bool(), allocations: s.uint(), keptBytes: s.uint(),
  /** Exit status once known (only for processes the agent started itself). */
  exitCode: s.nullable(s.int()),
  /** Image this process was restored from, if any. */
  restoredFrom: s.nullable(s.string()),
  /** The GPU (UUID) behind each device ordinal of the process, as libphos last named them (hello or thaw). */
  gpus: s.optional(s.array(s.string())),
  /** Kept device memory per GPU of this node (index = the node's ordinal, bytes). */
  keptBytesByGpu: s.optional(s.array(s.uint())),
  /**
   * Keeper-path restore: the background fill of device memory from the image after the app was released
   * (chunks pending at libphos's gate). `failed`: a chunk file failed verification; its chunks stay
   * pending (the app waits if it touches them) and `errors` names the files (`phos ps`: failed-fill).
   */
  fill: s.optional(s.object({
    state: s.oneOf(['filling', 'done', 'failed', 'stopped'] as const), chunksDone: s.uint(), chunksTotal: s.uint(),
    bytesDone: s.uint(), bytesTotal: s.uint(), ms: s.number(),
    /** Wall clock (ms since the epoch) when the fill began and, once it ended, when it ended. */
    startedAt: s.number(), endedAt: s.nullable(s.number()),
    errors: s.array(s.object({ path: s.string(), chunk: s.int(), alloc: s.int(), message: s.string() })),
  })),
});
export type ProcessInfo = Infer<typeof PROCESS_INFO_SCHEMA>;

/** Phases a checkpoint or restore reports, in the order they happen. */
export const CONTROL_PHASES = Object.freeze([
  'prepare', 'freeze', 'lock', 'checkpoint', 'write-gpu', 'criu-dump', 'driver-restore', 'unlock', 'thaw', 'trim-criu', 'move-criu', 'seal',
  'verify', 'criu-restore', 'fill-gpu', 'done',
] as const);
export type ControlPhase = (typeof CONTROL_PHASES)[number];

export const CONTROL_EVENT_SCHEMAS = {
  /** A phase started or advanced; bytes for byte-moving phases (write-gpu, verify, fill-gpu). */
  progress: s.object({
    ...head, t: s.literal('progress'), phase: s.oneOf(CONTROL_PHASES), bytesDone: s.uint(), bytesTotal: s.uint(),
    /** ms since the operation began. */
    elapsedMs: s.number(),
  }),
  /** A step of a procedure finished (or was undone). */
  step: s.object({ ...head, t: s.literal('step'), name: s.string(), ms: s.number(), outcome: s.oneOf(['done', 'undone', 'failed'] as const) }),
  /** Log text (utf8) of `phos logs`. */
  log: s.object({ ...head, t: s.literal('log'), data: s.string() }),
  /** The last line of a successful request; body by verb. */
  result: s.object({ ...head, t: s.literal('result'), body: s.unknown() }),
  /** The last line of a failed request: a WireError. */
  error: s.object({ ...head, t: s.literal('error'), err: s.object({ code: s.string(), message: s.string(), remedy: s.string(), details: s.optional(s.record(s.unknown())) }) }),
} as const satisfies Record<string, Schema>;

export type ControlEventType = keyof typeof CONTROL_EVENT_SCHEMAS;
export type ControlEvent<T extends ControlEventType = ControlEventType> = T extends ControlEventType ? Infer<(typeof CONTROL_EVENT_SCHEMAS)[T]> : never;

/** Result of pre-dump and dump. */
export const CHECKPOINT_RESULT_SCHEMA = s.object({
  dir: s.string(), kind: s.oneOf(['pre-dump', 'dump'] as const), path: s.oneOf(IMAGE_PATHS),
  /** Why the safe path was taken (null on the keeper path). */
  safeReason: s.nullable(s.string()),
  chunks: s.uint(), chunksWritten: s.uint(), chunksFromParent: s.uint(), bytesWritten: s.uint(),
  /** Longest time the app's CUDA calls were blocked (lock/freeze to unlock/thaw, or to the end for dump). */
  stallMs: s.number(), criuMs: s.number(), totalMs: s.number(),
});
export type CheckpointResult = Infer<typeof CHECKPOINT_RESULT_SCHEMA>;

/**
 * Result of move-gpu. bytes: device memory moved; bytesInDowntime: of it, copied while the app was frozen
 * (the rest was copied before, while it ran); downtimeMs: freeze to thaw; copyMs: the copy inside it.
 */
export const MOVE_RESULT_SCHEMA = s.object({
  pid: s.uint(), fromGpu: s.int(), toGpu: s.uint(), bytes: s.uint(), bytesInDowntime: s.uint(), downtimeMs: s.number(), copyMs: s.number(), totalMs: s.number(),
});
export type MoveResult = Infer<typeof MOVE_RESULT_SCHEMA>;

/**
 * What the agent adds to manifest.json under `agent` (validators ignore unknown fields, so the
 * manifest's own schema is unchanged): how the GPU state is held, how to restart the process's record,
 * and the size of every CRIU file so a truncated image is refused naming the file.
 */
export const IMAGE_AGENT_SCHEMA = s.object({
  path: s.oneOf(IMAGE_PATHS),
  safeReason: s.nullable(s.string()),
  argv: s.array(s.string()), logPath: s.string(),
  criuFiles: s.record(s.uint()),
});
export type ImageAgentSection = Infer<typeof IMAGE_AGENT_SCHEMA>;

/** Decodes and validates one JSON line; null when it is not valid JSON. */
export function parseControlLine(line: string): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return null;
  }
}
