// Frames between libphos (inside the app) and the node agent, over a unix SOCK_SEQPACKET socket: one
// msgpack map per packet with `v` (PROTO_VERSION) and `t` (frame type); file descriptors ride along as
// SCM_RIGHTS where a frame says so. The C++ side gets its constants from the header generated out of
// this file (scripts/gen-cpp.ts -> native/include/phos/proto.h).
//
// Chunks: the VA region libphos reserves is cut into 2 MiB chunks; a chunk's index is
// (address - vaBase) / 2 MiB. Every `chunks` list on this socket uses that index.
//
// Freeze/thaw contract (the keeper holds a second reference to every slab, so nothing is copied):
//   agent: req freeze [+ spare fds]  ->  libphos: block new API calls, drain its streams, if spare fds came
//          with the frame copy each listed allocation into its spare (the consistent point of a snapshot),
//          unmap and release its own device mappings (VA reservations stay), rep {ms}, close the socket,
//          then retry connecting every few ms while app threads stay blocked.
//   libphos (after reconnecting, in the same process or in a CRIU-restored one): hello {resume: true}
//   agent: welcome, then req thaw {allocIds, pending?} + one fd per allocId  ->  libphos imports each fd,
//          maps it at the allocation's old address, sets access, arms the gate for `pending` chunks,
//          rep {ms}, unblocks. A launch or copy touching a pending chunk waits (and libphos sends
//          event gate-wait with those chunks) until req gate {chunks} marks them present.
//   rollback before the socket closed: req rollback -> libphos unblocks as if nothing happened.
import { s, type Infer, type Schema } from './schema.ts';

/** Operations the agent asks libphos to perform (frame `req`, field `op`). Wire strings never change. */
export const OPS = Object.freeze([
  'status', // report allocations, bytes and a dirty estimate
  'hash-round', // hash every chunk on the GPU; reply with the chunks changed since the last round
  'stream-out', // copy the listed chunks into the staging ring for the agent
  'snapshot', // brief freeze: take a consistent point (device copy or copy-on-write), then resume
  'freeze', // block new calls, sync, drop device mappings, close the socket, wait
  'thaw', // reconnect, re-import memory, re-map at the same addresses, arm the on-demand gate
  'gate', // on-demand fill: which chunks are present, the order for background fill
  'rollback', // undo a snapshot or freeze that did not complete
] as const);
export type Op = (typeof OPS)[number];

const header = { v: s.uint(), id: s.uint() };

export const FRAME_SCHEMAS = {
  /** libphos -> agent, first frame; fd: the staging ring memfd (when stagingBytes > 0). */
  hello: s.object({
    v: s.uint(), t: s.literal('hello'), pid: s.uint(), job: s.string(), vaBase: s.uint(), vaSize: s.uint(),
    device: s.uint(), stagingBytes: s.uint(),
    /** true when libphos reconnects after a freeze (same process, or restored by CRIU). */
    resume: s.optional(s.bool()),
    /**
     * The UUID ("GPU-…") of every device ordinal the process sees, in ordinal order, asked afresh at each
     * hello: after a restore onto other GPUs the same ordinal names another GPU.
     */
    gpus: s.optional(s.array(s.string())),
  }),
  /** agent -> libphos, answer to hello. */
  welcome: s.object({ v: s.uint(), t: s.literal('welcome'), node: s.string() }),
  /** libphos -> agent: a physical slab was created and mapped at va; fd: its shareable handle (keeper import). */
  alloc: s.object({
    v: s.uint(), t: s.literal('alloc'), id: s.uint(), va: s.uint(), size: s.uint(),
    /** 'slab': libphos's own allocator slab; 'app': a handle the app created with cuMemCreate (va 0 until mapped). */
    kind: s.optional(s.oneOf(['slab', 'app'] as const)),
    /** Device ordinal (the process's view) whose memory this is; absent = 0. */
    device: s.optional(s.uint()),
  }),
  /** libphos -> agent: a slab was released; the keeper drops its reference. */
  free: s.object({ v: s.uint(), t: s.literal('free'), id: s.uint() }),
  /**
   * agent -> libphos: perform `op`. stream-out/gate carry `chunks` (chunk indices, in order); freeze/snapshot
   * with spare memory and thaw carry `allocIds` with one fd per id attached in the same order; thaw may
   * carry `pending` (chunks the gate holds until a later gate frame).
   */
  req: s.object({
    ...header, t: s.literal('req'), op: s.oneOf(OPS), chunks: s.optional(s.array(s.uint())),
    allocIds: s.optional(s.array(s.uint())), pending: s.optional(s.array(s.uint())),
  }),
  /** libphos -> agent: the answer to req `id`. Result fields by op are in OP_RESULTS. */
  rep: s.object({
    ...header, t: s.literal('rep'), ok: s.bool(),
    err: s.optional(s.object({ code: s.string(), message: s.string() })),
  }),
  /** libphos -> agent, unsolicited: something the agent should know (gate miss, degraded to pass-through). */
  event: s.object({ v: s.uint(), t: s.literal('event'), kind: s.oneOf(['gate-wait', 'degraded', 'misspeculation'] as const), chunks: s.optional(s.array(s.uint())), message: s.optional(s.string()) }),
} as const satisfies Record<string, Schema>;

export type FrameType = keyof typeof FRAME_SCHEMAS;
export const FRAME_TYPES = Object.freeze(Object.keys(FRAME_SCHEMAS) as FrameType[]);
export type Frame<T extends FrameType = FrameType> = T extends FrameType ? Infer<(typeof FRAME_SCHEMAS)[T]> : never;

/** Result fields of a successful `rep`, per op (checked by the agent once it knows which op it asked). */
export const OP_RESULTS = {
  status: s.object({
    allocations: s.uint(), bytes: s.uint(), chunks: s.uint(), untrackedBytes: s.uint(), armed: s.bool(),
    /** Device bytes the driver reports in use that no tracked allocation explains: > 0 forces the safe path. */
    unexplainedBytes: s.optional(s.int()), dirtyEstimate: s.optional(s.uint()), slabs: s.optional(s.uint()),
    slabBytes: s.optional(s.uint()), appHandles: s.optional(s.uint()), appHandleBytes: s.optional(s.uint()),
    internalBytes: s.optional(s.uint()), driverUsedBytes: s.optional(s.uint()), baselineUsedBytes: s.optional(s.uint()),
    regionOk: s.optional(s.bool()),
  }),
  'hash-round': s.object({ changed: s.array(s.uint()), chunks: s.uint(), ms: s.number(), pointerChunks: s.optional(s.uint()) }),
  'stream-out': s.object({ bytes: s.uint() }),
  snapshot: s.object({ ms: s.number(), bytes: s.optional(s.uint()) }),
  /** bytes: copied into spare memory when the freeze carried spare fds. */
  freeze: s.object({
    ms: s.number(), bytes: s.optional(s.uint()),
    /** Chunks written since the agent's last hash-round (the freeze's own round; absent if it failed). */
    changed: s.optional(s.array(s.uint())),
    /** Address of libphos's shed mailbox: after the driver checkpoint the agent asks through it for the zero pages of the driver's copy to be dropped. */
    shed: s.optional(s.uint()),
  }),
  /** remaining: allocations still dropped (more than 16 fds span several thaw frames; libphos unblocks at 0). */
  thaw: s.object({
    ms: s.number(), remaining: s.optional(s.uint()),
    /** Last thaw frame: the UUID per device ordinal now (a driver restore onto other GPUs follows the resume hello). */
    gpus: s.optional(s.array(s.string())),
  }),
  gate: s.object({ pending: s.uint() }),
  rollback: s.object({}),
} as const satisfies Record<Op, Schema>;
