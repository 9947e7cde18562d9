// NATS request/reply bodies and KV records exchanged by the CLI, the coordinator and the agents. Each
// body carries `v`. Replies are wrapped in an envelope: { v, ok: true, body } or { v, ok: false, err }.
import { s, type Infer, type Schema } from './schema.ts';
import { NODE_NAME } from './subjects.ts';

const node = s.string(NODE_NAME);

/** Phases of a migration, in order; terminal ones last. Wire strings never change. */
export const MIGRATION_PHASES = Object.freeze([
  'pending', 'preparing-target', 'pre-copy', 'cutover', 'restoring', 'post-copy',
  'succeeded', 'failed', 'cancelled', 'rolled-back',
] as const);
export type MigrationPhase = (typeof MIGRATION_PHASES)[number];

export const MIGRATION_MODES = Object.freeze(['auto', 'precopy', 'postcopy'] as const);

/** A device allocation of a migrating process (libphos's id, VA, bytes; `app`: the app's own VMM handle). */
const migAlloc = s.object({ id: s.uint(), va: s.uint(), size: s.uint(), kind: s.oneOf(['slab', 'app'] as const), /** the app's device ordinal (absent = 0) */ device: s.optional(s.uint()) });
/** A file shipped at cutover: path relative to the image (`criu/…`) or absolute (the app's log), size, transport alloc id. */
/**
 * A file of a migration's CPU image. `growing`: CRIU is still writing it and `size` is an upper bound
 * (the target maps a sparse file that large); the same name offered again without it gives the final size.
 */
const migFile = s.object({ name: s.string(), size: s.uint(), alloc: s.uint(), growing: s.optional(s.bool()) });

const gpu = s.object({ index: s.uint(), uuid: s.string(), model: s.string(), memBytes: s.uint(), freeBytes: s.uint() });

export const MESSAGE_SCHEMAS = {
  /** agent -> coordinator (`coord.register`), and the KV record under nodes/<node>. */
  'node-register': s.object({
    v: s.uint(), node, host: s.string(), dataAddr: s.string(), gpus: s.array(gpu),
    simulated: s.bool(), driverVersion: s.uint(), agentVersion: s.string(),
  }),
  /** KV record under nodes/<node>: what the node registered plus liveness kept by the coordinator. */
  'node-record': s.object({
    v: s.uint(), node, host: s.string(), dataAddr: s.string(), gpus: s.array(gpu),
    simulated: s.bool(), driverVersion: s.uint(), agentVersion: s.string(),
    registeredAt: s.uint(), lastSeen: s.uint(), alive: s.bool(),
  }),
  /** KV record under processes/<node>.<pid>, written by the agent that manages the process. */
  'process-record': s.object({
    v: s.uint(), node, pid: s.uint(), job: s.string(), device: s.uint(), gpuBytes: s.uint(), startedAt: s.uint(),
    /** How many GPUs the process uses (absent = 1). */
    devices: s.optional(s.uint()),
  }),
  /** agent -> everyone (`hb.<node>`), every few seconds. */
  heartbeat: s.object({ v: s.uint(), node, at: s.uint(), processes: s.uint() }),
  /** cli -> coordinator (`coord.migrate`). */
  'migrate-request': s.object({
    v: s.uint(), pid: s.uint(), from: node, to: node,
    bandwidthBytesPerSec: s.nullable(s.uint()), maxDowntimeMs: s.uint(), timeoutMs: s.uint(),
    mode: s.oneOf(MIGRATION_MODES),
    /** `--gpus`: the target GPU for each of the process's devices, in order (absent: the coordinator picks). */
    gpus: s.optional(s.array(s.uint())),
  }),
  /** coordinator -> cli: the migration was accepted. */
  'migrate-accepted': s.object({ v: s.uint(), id: s.string() }),
  /** cli -> coordinator (`coord.cancel`). */
  'cancel-request': s.object({ v: s.uint(), id: s.string() }),
  /** cli -> coordinator (`coord.nodes`, `coord.migrations`): list requests take no arguments. */
  'list-request': s.object({ v: s.uint() }),
  /** coordinator -> target agent (`agent.<to>.prepare-target`): open a transport receiver for migration `id`. */
  'prepare-target': s.object({
    v: s.uint(), id: s.string(), pid: s.uint(), from: node, job: s.string(), gpuBytes: s.uint(), streams: s.uint(),
    /** The target's GPU for each of the process's devices (index = the app's ordinal); absent = the same ordinals. */
    gpus: s.optional(s.array(s.uint())),
  }),
  /** target agent -> coordinator: where the source's transport connects. */
  'target-ready': s.object({ v: s.uint(), host: s.string(), port: s.uint(), streams: s.uint() }),
  /** source agent -> target agent (`agent.<to>.migrate-allocs`): the device allocations whose chunks will arrive (ids are transport alloc ids). */
  'migrate-allocs': s.object({ v: s.uint(), id: s.string(), allocations: s.array(migAlloc) }),
  /** source agent -> target agent (`agent.<to>.migrate-files`): CPU-side files (CRIU image, app log) offered at cutover. */
  'migrate-files': s.object({ v: s.uint(), id: s.string(), files: s.array(migFile) }),
  /** target agent -> source agent: the transport alloc ids of the offered files it wants (a file it already holds is skipped). */
  'files-wanted': s.object({ v: s.uint(), allocs: s.array(s.uint()) }),
  /** coordinator -> source agent (`agent.<from>.pre-copy`): stream GPU memory in hash-driven rounds while the app runs. */
  'precopy-request': s.object({
    v: s.uint(), id: s.string(), pid: s.uint(), to: node, host: s.string(), port: s.uint(), streams: s.uint(),
    bandwidthBytesPerSec: s.nullable(s.uint()), maxDowntimeMs: s.uint(), mode: s.oneOf(MIGRATION_MODES),
  }),
  /** source agent -> coordinator: pre-copy ended (converged or out of rounds). */
  'precopy-result': s.object({ v: s.uint(), rounds: s.uint(), bytesSent: s.uint(), dirtyBytes: s.uint(), converged: s.bool() }),
  /** coordinator -> source agent (`agent.<from>.cutover`), and coordinator -> either agent (`migration-end`) name only the id. */
  'migration-ref': s.object({ v: s.uint(), id: s.string() }),
  /** source agent -> coordinator: the app is dumped, its last chunks and CPU image are on the target; the manifest to restore from. */
  'cutover-result': s.object({
    v: s.uint(), manifest: s.string(), finalBytes: s.uint(), freezeMs: s.number(),
    /** Post-copy: chunks (and bytes) still to send once the target runs the app; absent or 0 = none. */
    postcopyChunks: s.optional(s.uint()), postcopyBytes: s.optional(s.uint()),
  }),
  /** coordinator -> target agent (`agent.<to>.restore-migrated`). */
  'restore-migrated': s.object({ v: s.uint(), id: s.string(), manifest: s.string(), /** chunks the source sends after the app runs here */ postcopy: s.optional(s.uint()) }),
  /** target agent -> coordinator: the app runs here now. */
  'restore-migrated-result': s.object({ v: s.uint(), pid: s.uint(), ms: s.number(), /** chunks the app waits for at the gate (post-copy) */ pending: s.optional(s.uint()) }),
  /** source agent -> coordinator (`postcopy-send`) and target agent (`postcopy-wait`): the post-copy's end. */
  /** `postcopy-send` (source) / `postcopy-wait` (target): what the post-copy moved; `demanded`: chunks the source sent ahead because the app waited for them. */
  'postcopy-result': s.object({ v: s.uint(), chunks: s.uint(), bytes: s.uint(), ms: s.number(), demanded: s.optional(s.uint()) }),
  /** target agent -> source agent (`mig.<id>.demand`), post-copy: chunks (allocation id, byte offset) the app waits for at the gate. */
  'postcopy-demand': s.object({ v: s.uint(), id: s.string(), chunks: s.array(s.object({ alloc: s.uint(), offset: s.uint() })) }),
  /** coordinator -> agents (`agent.<node>.migration-end`): commit (target runs it) or abort (the source keeps or gets it back). */
  'migration-end': s.object({ v: s.uint(), id: s.string(), outcome: s.oneOf(['commit', 'abort'] as const) }),
  /** source agent -> coordinator (`mig.<id>.progress`): bytes of the pre-copy rounds so far. */
  'migration-progress': s.object({
    v: s.uint(), id: s.string(), round: s.uint(), bytesTotal: s.uint(), bytesSent: s.uint(), bytesRemaining: s.uint(), dirtyBytesPerSec: s.number(),
  }),
  /** KV record under migrations/<id>, and each progress event. */
  'migration-state': s.object({
    v: s.uint(), id: s.string(), pid: s.uint(), from: node, to: node, phase: s.oneOf(MIGRATION_PHASES),
    bytesTotal: s.uint(), bytesSent: s.uint(), bytesRemaining: s.uint(), dirtyBytesPerSec: s.number(),
    startedAt: s.uint(), updatedAt: s.uint(), downtimeMs: s.nullable(s.number()),
    /** GPU bytes sent while the app was frozen (the cutover's last dirty chunks), once the source dumped. */
    bytesInDowntime: s.optional(s.uint()),
    error: s.nullable(s.object({ code: s.string(), message: s.string(), remedy: s.string() })),
  }),
} as const satisfies Record<string, Schema>;

export type MessageType = keyof typeof MESSAGE_SCHEMAS;
export const MESSAGE_TYPES = Object.freeze(Object.keys(MESSAGE_SCHEMAS) as MessageType[]);
export type Message<T extends MessageType> = Infer<(typeof MESSAGE_SCHEMAS)[T]>;

export const REPLY_SCHEMA = s.object({
  v: s.uint(), ok: s.bool(), body: s.optional(s.unknown()),
  err: s.optional(s.object({ code: s.string(), message: s.string(), remedy: s.string(), details: s.optional(s.record(s.unknown())) })),
});
export type Reply = Infer<typeof REPLY_SCHEMA>;
