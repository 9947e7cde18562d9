// The TS face of the pccl addon (build/pccl/Release/pccl.node) and the only module that loads it.
// It declares every native function and DTO, in addon.cpp's order, validates arguments, fills defaults
// and turns native errors into PhosError. Orchestration (what to call when) belongs to the node agent.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { PhosError, activeFault, isErrorCode, type FaultPoint } from '../../proto/src/index.ts';

/**
 * Where deploy/install.sh builds the addon (`npx cmake-js compile --directory native/pccl --out build/pccl`);
 * PHOS_PCCL_ADDON names another build (e.g. one with -DPCCL_SANITIZE=ON).
 */
export const ADDON_PATH = process.env.PHOS_PCCL_ADDON || fileURLToPath(new URL('../../build/pccl/Release/pccl.node', import.meta.url));

/** Lock timeout handed to cuCheckpointProcessLock when the caller names none (0 would wait forever). */
export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;
/** Largest packet on the agent socket, both ways. */
export const MAX_PACKET_BYTES = 1 << 20;
/** Most fds one packet carries (SCM_RIGHTS). */
export const MAX_PACKET_FDS = 16;
/** Longest unix socket path (sun_path minus its NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;
/** Most parallel TCP streams one transport session may have. */
export const MAX_TRANSPORT_STREAMS = 64;
/** Largest chunk the transport carries in one frame (the receiver refuses bigger lengths as broken frames). */
export const MAX_TRANSPORT_CHUNK_BYTES = 1 << 30;
/** Streams per transport session when the caller names none. */
export const DEFAULT_TRANSPORT_STREAMS = 4;
/** How long a transport peer may stay silent (connect, handshake, owed ack, reconnect window) before it is gone. */
export const DEFAULT_TRANSPORT_TIMEOUT_MS = 10_000;
/** Reconnect attempts per broken stream (backoff 50 ms doubling to 1 s, all inside the timeout). */
export const DEFAULT_TRANSPORT_RECONNECTS = 5;
/** Address a receiver listens on when the caller names none. */
export const DEFAULT_TRANSPORT_HOST = '0.0.0.0';

// ---------------------------------------------------------------------------------------------------
// DTOs, in addon.cpp's order.

/** Steps of the driver's process checkpoint, in cycle order: lock → checkpoint → restore → unlock. */
export const DRIVER_OPS = Object.freeze(['lock', 'checkpoint', 'restore', 'unlock'] as const);
export type DriverOp = (typeof DRIVER_OPS)[number];

/** How long a native call took, measured around the driver or I/O work itself. */
export interface Timing {
  ms: number;
}

/**
 * `cuCheckpointProcessGetState` of a process. `checkpointing`/`restoring` come from newer drivers;
 * `unknown` is a value this build does not know.
 */
export const PROCESS_STATES = Object.freeze(['running', 'locked', 'checkpointed', 'failed', 'checkpointing', 'restoring', 'unknown'] as const);
export type ProcessState = (typeof PROCESS_STATES)[number];

export interface DriverStateResult extends Timing {
  state: ProcessState;
}

/** The driver's "CUDA restore thread" of a process: it must stay runnable during checkpoint and restore. */
export interface RestoreThread extends Timing {
  tid: number;
}

/** A process connected; pid/uid/gid are SO_PEERCRED, taken by the kernel at connect(). */
export interface AgentConnectEvent {
  type: 'connect';
  conn: number;
  pid: number;
  uid: number;
  gid: number;
}

/** One packet (one frame). The fds are the receiver's: close them (closeFd) or hand them on (keeperImport, mapFd). */
export interface AgentPacketEvent {
  type: 'packet';
  conn: number;
  bytes: Buffer;
  fds: number[];
}

/** The connection ended (peer closed, agentClose, a protocol violation, or the server closed); the last event of `conn`. */
export interface AgentClosedEvent {
  type: 'closed';
  conn: number;
  closed: true;
  /** 'closed by the peer', 'closed by the agent', 'agent socket server closed', or the protocol violation. */
  reason: string;
}

export type AgentEvent = AgentConnectEvent | AgentPacketEvent | AgentClosedEvent;

/** One chunk to write: the range [offset, offset+length) of the source region goes to its own file `path`. */
export interface ChunkWriteItem {
  offset: number;
  length: number;
  path: string;
}

export interface WriteChunksOptions {
  /** A mapping id (mapFd) or a keeper region id (keeperImport, keeperSpare). */
  src: number;
  items: ChunkWriteItem[];
  /**
   * fsync each file and its directory before returning.
   * @default false
   */
  fsync?: boolean;
}

export interface WriteChunksResult extends Timing {
  /** Per item, in order: the chunk's 64-bit hash as 16 lower-case hex digits (libphos's chunk hash). */
  hashes: string[];
  bytes: number;
}

/** One chunk to read: file `path` must hold exactly `length` bytes hashing to `hash`, then lands at `offset`. */
export interface ChunkReadItem {
  offset: number;
  length: number;
  path: string;
  hash: string;
}

export interface ReadChunksOptions {
  /** A writable mapping id or a keeper region id. */
  dst: number;
  items: ChunkReadItem[];
}

export interface ReadChunksResult extends Timing {
  bytes: number;
}

/** Device memory the keeper holds, mapped in the agent's own context. */
export interface KeeperRegion extends Timing {
  id: number;
  /** Bytes held (spare allocations are rounded up to the driver's granularity). */
  size: number;
  /** Device ordinal (the agent's driver view) whose memory it is. */
  device: number;
}

/** Restore onto other GPUs: [old UUID, new UUID] ("GPU-…") for every GPU the process sees. */
export type GpuPair = [string, string];

export interface TransportListenOptions {
  /**
   * Numeric address to listen on.
   * @default DEFAULT_TRANSPORT_HOST ('0.0.0.0')
   */
  host?: string;
  /**
   * TCP port; 0 picks an ephemeral port (returned).
   * @default 0
   */
  port?: number;
  /** Streams the session will have (the sender must connect with the same number). */
  streams: number;
  /**
   * A broken stream not reconnected within this long is reported as an AGENT_UNAVAILABLE error event.
   * @default DEFAULT_TRANSPORT_TIMEOUT_MS
   */
  timeoutMs?: number;
}

/** A listening receiver: its id for the other transport calls and the port it is bound to. */
export interface TransportReceiver {
  id: number;
  port: number;
}

/** Where chunks of one alloc id land: `dst` (mapping id or keeper region id) at `offset + chunkOffset`. */
export interface TransportDest {
  dst: number;
  /** @default 0 */
  offset?: number;
}

/** Totals per stream; `stream` is its index. Sender side counts re-sends, receiver side hash failures. */
export interface TransportStreamTotals {
  stream: number;
  bytes: number;
  chunks: number;
  reconnects: number;
  resent?: number;
  corrupt?: number;
}

/** A stream of the session connected (`reconnect`: it replaces a broken connection of the same index). */
export interface TransportStreamEvent {
  type: 'stream';
  stream: number;
  peer: string;
  reconnect: boolean;
}

/** A chunk arrived, its hash matched and its bytes are in the destination. A re-sent chunk may arrive twice. */
export interface TransportChunkEvent {
  type: 'chunk';
  stream: number;
  alloc: number;
  offset: number;
  length: number;
  hash: string;
}

/** A chunk failed its hash check and was dropped (IMAGE_CORRUPT naming alloc and offset); the sender re-sends it. */
export interface TransportCorruptEvent {
  type: 'corrupt';
  stream: number;
  alloc: number;
  offset: number;
  length: number;
  error: PhosError;
}

/** Bytes and chunks verified so far in the session, at most every 250 ms while bytes arrive. */
export interface TransportProgressEvent {
  type: 'progress';
  bytes: number;
  chunks: number;
  ms: number;
}

/** A connection ended before its end-of-session marker; chunks it carried without an ack are re-sent. */
export interface TransportStreamClosedEvent {
  type: 'stream-closed';
  stream: number;
  reason: string;
}

/**
 * Something the receiver could not do: BAD_FRAME (a broken header), NOT_FOUND (no destination for an
 * alloc), AGENT_UNAVAILABLE (a broken stream did not come back within the timeout), DRIVER_FAILED.
 */
export interface TransportErrorEvent {
  type: 'error';
  stream?: number;
  error: PhosError;
}

/** Every stream delivered its end-of-session marker: the session's totals. */
export interface TransportEndEvent {
  type: 'end';
  session: string;
  bytes: number;
  chunks: number;
  corrupt: number;
  ms: number;
  perStream: TransportStreamTotals[];
}

export type TransportReceiverEvent =
  | TransportStreamEvent
  | TransportChunkEvent
  | TransportCorruptEvent
  | TransportProgressEvent
  | TransportStreamClosedEvent
  | TransportErrorEvent
  | TransportEndEvent;

export interface TransportConnectOptions {
  host: string;
  port: number;
  /** @default DEFAULT_TRANSPORT_STREAMS */
  streams?: number;
  /**
   * Cap on the bytes per second of all streams together (token bucket); null: unlimited.
   * @default null
   */
  bandwidthBytesPerSec?: number | null;
  /** @default DEFAULT_TRANSPORT_TIMEOUT_MS */
  timeoutMs?: number;
  /** @default DEFAULT_TRANSPORT_RECONNECTS */
  reconnects?: number;
  /** Sender events (stream-broken, stream-resumed, stream-dead, resend). */
  onEvent?: (e: TransportSenderEvent) => void;
}

/** A connected sender: its id and the session id the receiver sees. */
export interface TransportSender {
  id: number;
  session: string;
}

/** A stream's connection broke, was re-established (`attempt`), or was given up. */
export interface TransportSenderStreamEvent {
  type: 'stream-broken' | 'stream-resumed' | 'stream-dead';
  stream: number;
  reason: string;
  attempt?: number;
}

/** A chunk goes out again: the receiver's hash differed (`corrupt`) or its stream broke before the ack. */
export interface TransportResendEvent {
  type: 'resend';
  alloc: number;
  offset: number;
  length: number;
  reason: 'corrupt' | 'stream-broken';
  expected?: string;
  actual?: string;
}

export type TransportSenderEvent = TransportSenderStreamEvent | TransportResendEvent;

/** One chunk to send: `length` bytes at `offset` of `src` land at `chunkOffset` of `alloc` on the receiver. */
export interface TransportItem {
  /** A mapping id (mapFd) or a keeper region id. */
  src: number;
  offset: number;
  length: number;
  alloc: number;
  chunkOffset: number;
}

export interface TransportSendResult extends Timing {
  /** Bytes acknowledged (each item once). */
  bytes: number;
  /** Per item, in order: the hash the receiver verified (libphos's chunk hash, 16 hex digits). */
  hashes: string[];
  perStream: TransportStreamTotals[];
}

export interface TransportCloseResult extends Timing {
  bytes: number;
  chunks: number;
  /** Every live stream's end-of-session marker was acknowledged within the timeout. */
  ended: boolean;
  perStream: TransportStreamTotals[];
}

/** One range to hash: [offset, offset+length) of the source region. */
export interface ChunkRange {
  offset: number;
  length: number;
}

export interface HashChunksOptions {
  /** A mapping id (mapFd) or a keeper region id (keeperImport, keeperSpare), as writeChunks' `src`. */
  src: number;
  items: ChunkRange[];
}

export interface HashChunksResult extends Timing {
  /** Per item, in order: libphos's chunk hash, exactly what writeChunks returns for the same bytes. */
  hashes: string[];
  bytes: number;
}

/** The native functions exactly as addon.cpp registers them, in its order; every field set. */
interface NativePccl {
  driverCheckpoint(op: DriverOp, pid: number, timeoutMs: number, gpuPairs?: GpuPair[]): Promise<Timing>;
  driverState(pid: number): Promise<{ state: ProcessState; ms: number }>;
  restoreThreadId(pid: number): Promise<RestoreThread>;
  agentListen(path: string, onEvent: (e: AgentEvent) => void): void;
  agentSend(conn: number, bytes: Buffer, fds: number[]): void;
  agentClose(conn: number): void;
  agentServerClose(): void;
  closeFd(fd: number): void;
  mapFd(fd: number, size: number, writable: boolean): number;
  unmap(id: number): void;
  mapRead(id: number, offset: number, length: number): Buffer;
  mapWrite(id: number, offset: number, bytes: Buffer): void;
  writeChunks(opts: { src: number; items: ChunkWriteItem[]; fsync: boolean }): Promise<WriteChunksResult>;
  readChunks(opts: { dst: number; items: ChunkReadItem[] }): Promise<ReadChunksResult>;
  keeperImport(fd: number, size: number, device: number): Promise<KeeperRegion>;
  keeperRelease(id: number): Promise<Timing>;
  keeperExportFd(id: number): Promise<number>;
  keeperSpare(size: number, device: number): Promise<KeeperRegion>;
  keeperCopy(dstId: number, dstOff: number, srcId: number, srcOff: number, length: number): Promise<Timing>;
  transportListen(opts: { host: string; port: number; streams: number; timeoutMs: number }, onEvent: (e: NativeTransportEvent) => void): TransportReceiver;
  transportRegisterDest(receiver: number, alloc: number, dest: { dst: number; offset: number }): void;
  transportReceiverClose(receiver: number): void;
  transportConnect(
    opts: { host: string; port: number; streams: number; bandwidthBytesPerSec: number | null; timeoutMs: number; reconnects: number; fault: FaultPoint | null },
    onEvent: (e: TransportSenderEvent) => void,
  ): Promise<TransportSender>;
  transportSend(sender: number, items: TransportItem[]): Promise<TransportSendResult>;
  transportSetBandwidth(sender: number, bytesPerSec: number | null): void;
  transportClose(sender: number): Promise<TransportCloseResult>;
  hashChunks(opts: { src: number; items: ChunkRange[] }): Promise<HashChunksResult>;
  becomeSubreaper(): void;
  reap(pid: number): { code: number | null; signal: number | null } | null;
  driverCopyShed(pid: number, addr: number, timeoutMs: number): Promise<DriverCopyShed>;
}

/** What a frozen libphos dropped of the driver's checkpoint copy (driverCopyShed). */
export interface DriverCopyShed extends Timing {
  /** false: libphos did not answer within the time given (nothing is known of the copy). */
  done: boolean;
  scannedBytes: number;
  droppedBytes: number;
}

/** Receiver events as native code sends them: errors are plain PcclError objects, turned into PhosError here. */
type NativeTransportEvent =
  | Exclude<TransportReceiverEvent, TransportCorruptEvent | TransportErrorEvent>
  | (Omit<TransportCorruptEvent, 'error'> & { error: unknown })
  | (Omit<TransportErrorEvent, 'error'> & { error: unknown });

// ---------------------------------------------------------------------------------------------------
// Loading and errors.

let addon: NativePccl | undefined;

function native(): NativePccl {
  if (addon) return addon;
  if (!existsSync(ADDON_PATH)) {
    throw new PhosError('INTERNAL', `the pccl addon is not built (${ADDON_PATH})`, { remedy: 'run: bash deploy/install.sh' });
  }
  addon = createRequire(import.meta.url)(ADDON_PATH) as NativePccl;
  return addon;
}

/** Native errors are plain Errors with `name: 'PcclError'`, a phos `code` and fields (path, pid, cudaError, errno). */
function fromNative(err: unknown): PhosError {
  if (err instanceof PhosError) return err;
  if (err instanceof Error && (err as { name?: unknown }).name === 'PcclError') {
    const { code, message, name: _name, stack: _stack, ...rest } = err as Error & Record<string, unknown>;
    const details: Record<string, unknown> = { ...rest };
    if (isErrorCode(code)) return new PhosError(code, message, { details, cause: err });
    return new PhosError('INTERNAL', message, { details: { ...details, nativeCode: code }, cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new PhosError('INTERNAL', `pccl: ${message}`, { cause: err });
}

function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw fromNative(err);
  }
}

async function callAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw fromNative(err);
  }
}

function badArgs(message: string): PhosError {
  return new PhosError('BAD_ARGS', message);
}

function uint(name: string, v: unknown, opts: { min?: number; max?: number } = {}): number {
  const min = opts.min ?? 0;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw badArgs(`${name} must be an integer in [${min}, ${max}], got ${String(v)}`);
  }
  return v;
}

function pathArg(name: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.includes('\0')) throw badArgs(`${name} must be a non-empty path without NUL`);
  return v;
}

function fdList(name: string, v: unknown): number[] {
  if (!Array.isArray(v)) throw badArgs(`${name} must be an array of fds`);
  if (v.length > MAX_PACKET_FDS) throw badArgs(`${name}: at most ${MAX_PACKET_FDS} fds per packet, got ${v.length}`);
  return v.map((fd, i) => uint(`${name}[${i}]`, fd, { max: 0x7fffffff }));
}

const pidArg = (v: unknown): number => uint('pid', v, { min: 1, max: 0x7fffffff });
const idArg = (name: string, v: unknown): number => uint(name, v, { min: 1, max: 0xffffffff });
const HEX64 = /^[0-9a-f]{16}$/;

// ---------------------------------------------------------------------------------------------------
// Functions, in addon.cpp's order.

/**
 * One step of the driver's process checkpoint on `pid` (cuCheckpointProcessLock/Checkpoint/Restore/Unlock),
 * on a worker thread. `timeoutMs` applies to lock only (0: wait forever; on timeout the process stays running).
 * `gpuPairs` (restore only) restores onto other GPUs (CUcheckpointRestoreArgs.gpuPairs): every GPU the
 * process sees must be named. Rejects with DRIVER_FAILED naming the CUDA error and the pid.
 */
export async function driverCheckpoint(op: DriverOp, pid: number, timeoutMs: number = DEFAULT_LOCK_TIMEOUT_MS, gpuPairs: GpuPair[] = []): Promise<Timing> {
  if (!DRIVER_OPS.includes(op)) throw badArgs(`driver checkpoint op must be one of ${DRIVER_OPS.join('|')}, got ${String(op)}`);
  const p = pidArg(pid);
  const t = uint('timeoutMs', timeoutMs, { max: 0xffffffff });
  if (gpuPairs.length && op !== 'restore') throw badArgs('gpuPairs apply to restore only');
  return callAsync(() => native().driverCheckpoint(op, p, t, gpuPairs));
}

/** cuCheckpointProcessGetState of `pid`. */
export async function driverState(pid: number): Promise<DriverStateResult> {
  const p = pidArg(pid);
  return callAsync(() => native().driverState(p));
}

/** cuCheckpointProcessGetRestoreThreadId of `pid`. */
export async function restoreThreadId(pid: number): Promise<RestoreThread> {
  const p = pidArg(pid);
  return callAsync(() => native().restoreThreadId(p));
}

let serverOpen = false;

/**
 * Starts the agent's SOCK_SEQPACKET server at `path` (a stale socket file is replaced; a live one is
 * ILLEGAL_STATE; the directory and the socket's mode are the caller's). `@name` is a Linux abstract
 * socket instead: no file, one name space per network namespace (a name held by a live listener there is
 * ILLEGAL_STATE). Events arrive on the JS thread in order per connection. One server per process.
 */
export function agentListen(path: string, onEvent: (e: AgentEvent) => void): void {
  const p = pathArg('agent socket path', path);
  if (Buffer.byteLength(p) > MAX_SOCKET_PATH_BYTES) throw badArgs(`agent socket path is longer than ${MAX_SOCKET_PATH_BYTES} bytes: ${p}`);
  if (typeof onEvent !== 'function') throw badArgs('onEvent must be a function');
  call(() =>
    native().agentListen(p, (e) => {
      // Packets already queued when the server closed: nobody will handle their fds, so close them here.
      if (!serverOpen && e.type === 'packet') {
        for (const fd of e.fds) call(() => native().closeFd(fd));
        return;
      }
      onEvent(e);
    }),
  );
  serverOpen = true;
}

/** Sends one packet (1 byte to 1 MiB) with up to 16 fds; the fds remain the caller's. NOT_FOUND when `conn` is closed. */
export function agentSend(conn: number, bytes: Buffer, fds: number[] = []): void {
  const c = idArg('conn', conn);
  if (!Buffer.isBuffer(bytes) || bytes.length === 0 || bytes.length > MAX_PACKET_BYTES) {
    throw badArgs(`a packet must be a Buffer of 1..${MAX_PACKET_BYTES} bytes`);
  }
  const f = fdList('fds', fds);
  call(() => native().agentSend(c, bytes, f));
}

/** Ends a connection; its `closed` event follows. */
export function agentClose(conn: number): void {
  const c = idArg('conn', conn);
  call(() => native().agentClose(c));
}

/** Stops the server: every connection gets its `closed` event, the socket file (if not abstract) is removed. Idempotent. */
export function agentServerClose(): void {
  if (!addon) return;
  serverOpen = false;
  call(() => native().agentServerClose());
}

/** Closes an fd received in a packet (or returned by keeperExportFd) that is not handed on. */
export function closeFd(fd: number): void {
  const f = uint('fd', fd, { min: 3, max: 0x7fffffff });
  call(() => native().closeFd(f));
}

/** Maps `size` bytes of a shared memory fd (libphos's staging memfd); returns a region id. The fd stays the caller's. */
export function mapFd(fd: number, size: number, writable: boolean = false): number {
  const f = uint('fd', fd, { max: 0x7fffffff });
  const s = uint('size', size, { min: 1 });
  return call(() => native().mapFd(f, s, Boolean(writable)));
}

/** Drops a mapping; chunk jobs still using it finish first. */
export function unmap(id: number): void {
  const i = idArg('id', id);
  call(() => native().unmap(i));
}

/** Copies bytes out of a mapping: for control data and tests; bulk bytes go through writeChunks. */
export function mapRead(id: number, offset: number, length: number): Buffer {
  const i = idArg('id', id);
  return call(() => native().mapRead(i, uint('offset', offset), uint('length', length)));
}

/** Copies bytes into a writable mapping: for control data and tests; bulk bytes go through readChunks. */
export function mapWrite(id: number, offset: number, bytes: Buffer): void {
  const i = idArg('id', id);
  if (!Buffer.isBuffer(bytes)) throw badArgs('bytes must be a Buffer');
  call(() => native().mapWrite(i, uint('offset', offset), bytes));
}

/**
 * Writes each range of `src` to its own file (temp name, optional fsync, rename) on a worker thread and
 * returns each chunk's hash. DISK_FULL names the file; no partial file is left behind. Items already
 * written before a failure stay (whole); the caller removes the partial image.
 */
export async function writeChunks(opts: WriteChunksOptions): Promise<WriteChunksResult> {
  const src = idArg('src', opts?.src);
  if (!Array.isArray(opts.items)) throw badArgs('items must be an array');
  const items = opts.items.map((it, i) => ({
    offset: uint(`items[${i}].offset`, it?.offset),
    length: uint(`items[${i}].length`, it?.length, { min: 1 }),
    path: pathArg(`items[${i}].path`, it?.path),
  }));
  const fsync = opts.fsync ?? false;
  if (typeof fsync !== 'boolean') throw badArgs('fsync must be a boolean');
  return callAsync(() => native().writeChunks({ src, items, fsync }));
}

/**
 * Reads chunk files into `dst` on a worker thread, verifying each file's length and hash before its
 * bytes are copied into place. IMAGE_CORRUPT names the file (missing, wrong size, hash mismatch).
 */
export async function readChunks(opts: ReadChunksOptions): Promise<ReadChunksResult> {
  const dst = idArg('dst', opts?.dst);
  if (!Array.isArray(opts.items)) throw badArgs('items must be an array');
  const items = opts.items.map((it, i) => {
    if (typeof it?.hash !== 'string' || !HEX64.test(it.hash)) throw badArgs(`items[${i}].hash must be 16 lower-case hex digits`);
    return {
      offset: uint(`items[${i}].offset`, it.offset),
      length: uint(`items[${i}].length`, it.length, { min: 1 }),
      path: pathArg(`items[${i}].path`, it.path),
      hash: it.hash,
    };
  });
  return callAsync(() => native().readChunks({ dst, items }));
}

/**
 * The keeper imports an app allocation by its POSIX fd (a dup is kept; the caller still owns and closes
 * `fd`) and maps it in the agent's context of `device` (the agent's ordinal of the GPU the memory is on):
 * the memory outlives the app's own mappings.
 */
export async function keeperImport(fd: number, size: number, device = 0): Promise<KeeperRegion> {
  const f = uint('fd', fd, { max: 0x7fffffff });
  const s = uint('size', size, { min: 1 });
  return callAsync(() => native().keeperImport(f, s, uint('device', device, { max: 15 })));
}

/** Drops the keeper's reference; the id is invalid at once, the memory goes once no chunk job uses it. */
export async function keeperRelease(id: number): Promise<Timing> {
  const i = idArg('id', id);
  return callAsync(() => native().keeperRelease(i));
}

/** A new fd for a keeper region's memory, to hand back to a restored app; the caller owns (and closes) it. */
export async function keeperExportFd(id: number): Promise<number> {
  const i = idArg('id', id);
  return callAsync(() => native().keeperExportFd(i));
}

/** Allocates keeper-owned memory on `device` (rounded up to the granularity), e.g. for consistent snapshots. */
export async function keeperSpare(size: number, device = 0): Promise<KeeperRegion> {
  const s = uint('size', size, { min: 1 });
  return callAsync(() => native().keeperSpare(s, uint('device', device, { max: 15 })));
}

/** Device-to-device copy between keeper regions (cuMemcpyDtoD; a peer copy when they are on two devices). */
export async function keeperCopy(dstId: number, dstOff: number, srcId: number, srcOff: number, length: number): Promise<Timing> {
  const d = idArg('dstId', dstId);
  const s = idArg('srcId', srcId);
  return callAsync(() => native().keeperCopy(d, uint('dstOff', dstOff), s, uint('srcOff', srcOff), uint('length', length, { min: 1 })));
}

function streamsArg(v: unknown): number {
  return uint('streams', v, { min: 1, max: MAX_TRANSPORT_STREAMS });
}

function hostArg(v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.includes('\0')) throw badArgs('host must be a non-empty string');
  return v;
}

function rateArg(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  return uint('bandwidthBytesPerSec', v, { min: 1 });
}

/**
 * Starts a transport receiver: binds `host:port` at once (port 0: ephemeral, returned) and accepts the
 * `streams` connections of one session, each on its own native thread. Chunks land in the destinations
 * registered with transportRegisterDest; `onEvent` gets records, never bytes. Close it with
 * transportReceiverClose (it keeps the process alive until then, like a listening server).
 */
export function transportListen(opts: TransportListenOptions, onEvent: (e: TransportReceiverEvent) => void): TransportReceiver {
  const host = hostArg(opts?.host ?? DEFAULT_TRANSPORT_HOST);
  const port = uint('port', opts.port ?? 0, { max: 65535 });
  const streams = streamsArg(opts.streams);
  const timeoutMs = uint('timeoutMs', opts.timeoutMs ?? DEFAULT_TRANSPORT_TIMEOUT_MS, { min: 1, max: 0x7fffffff });
  if (typeof onEvent !== 'function') throw badArgs('onEvent must be a function');
  return call(() =>
    native().transportListen({ host, port, streams, timeoutMs }, (e) => {
      if (e.type === 'corrupt' || e.type === 'error') onEvent({ ...e, error: fromNative(e.error) } as TransportReceiverEvent);
      else onEvent(e);
    }),
  );
}

/** Chunks of `alloc` will land in `dest.dst` (a writable mapping or a keeper region) at `dest.offset + chunkOffset`. */
export function transportRegisterDest(receiver: number, alloc: number, dest: TransportDest): void {
  const r = idArg('receiver', receiver);
  const a = uint('alloc', alloc, { max: 0xffffffff });
  const dst = idArg('dst', dest?.dst);
  const offset = uint('offset', dest.offset ?? 0);
  call(() => native().transportRegisterDest(r, a, { dst, offset }));
}

/** Stops a receiver: every connection ends, its threads are joined, no event follows. Idempotent. */
export function transportReceiverClose(receiver: number): void {
  const r = idArg('receiver', receiver);
  if (!addon) return;
  call(() => native().transportReceiverClose(r));
}

/**
 * Connects a sender's `streams` TCP connections to a receiver and completes each handshake; rejects
 * with AGENT_UNAVAILABLE when the receiver cannot be reached within `timeoutMs`. `PHOS_FAULT` arms the
 * transport fault points (proto/src/faults.ts) for this sender. Close it with transportClose.
 */
export async function transportConnect(opts: TransportConnectOptions): Promise<TransportSender> {
  const host = hostArg(opts?.host);
  const port = uint('port', opts.port, { min: 1, max: 65535 });
  const streams = streamsArg(opts.streams ?? DEFAULT_TRANSPORT_STREAMS);
  const bandwidthBytesPerSec = rateArg(opts.bandwidthBytesPerSec);
  const timeoutMs = uint('timeoutMs', opts.timeoutMs ?? DEFAULT_TRANSPORT_TIMEOUT_MS, { min: 1, max: 0x7fffffff });
  const reconnects = uint('reconnects', opts.reconnects ?? DEFAULT_TRANSPORT_RECONNECTS, { max: 1000 });
  const onEvent = opts.onEvent ?? (() => {});
  if (typeof onEvent !== 'function') throw badArgs('onEvent must be a function');
  let fault: FaultPoint | null;
  try {
    fault = activeFault();
  } catch (err) {
    throw badArgs((err as Error).message);
  }
  return callAsync(() => native().transportConnect({ host, port, streams, bandwidthBytesPerSec, timeoutMs, reconnects, fault }, onEvent));
}

/**
 * Sends chunks over the sender's streams (spread over whichever stream is free), each with its hash in
 * the header; resolves once the receiver acknowledged every one, with the hashes it verified. A chunk
 * whose hash fails at the receiver, or whose stream breaks before its ack, is sent again. Rejects with
 * AGENT_UNAVAILABLE when every stream is gone, NOT_FOUND when the receiver has no destination for an
 * alloc, IMAGE_CORRUPT when a chunk keeps failing its check.
 */
export async function transportSend(sender: number, items: TransportItem[]): Promise<TransportSendResult> {
  const s = idArg('sender', sender);
  if (!Array.isArray(items)) throw badArgs('items must be an array');
  const checked = items.map((it, i) => ({
    src: idArg(`items[${i}].src`, it?.src),
    offset: uint(`items[${i}].offset`, it.offset),
    length: uint(`items[${i}].length`, it.length, { min: 1, max: MAX_TRANSPORT_CHUNK_BYTES }),
    alloc: uint(`items[${i}].alloc`, it.alloc, { max: 0xffffffff }),
    chunkOffset: uint(`items[${i}].chunkOffset`, it.chunkOffset),
  }));
  return callAsync(() => native().transportSend(s, checked));
}

/** Changes the sender's bandwidth cap (bytes/s for all streams together; null: unlimited) from the next piece on. */
export function transportSetBandwidth(sender: number, bytesPerSec: number | null): void {
  const s = idArg('sender', sender);
  const r = rateArg(bytesPerSec);
  call(() => native().transportSetBandwidth(s, r));
}

/**
 * Ends the session: sends still in flight reject with CANCELLED, every live stream carries the
 * end-of-session marker, the receiver's acknowledgement is awaited (up to the timeout; `ended` says
 * whether it came), the threads are joined. Resolves with the session's totals.
 */
export async function transportClose(sender: number): Promise<TransportCloseResult> {
  const s = idArg('sender', sender);
  return callAsync(() => native().transportClose(s));
}

/**
 * Hashes each range of `src` (host mapping or keeper region) on one worker thread without writing
 * anything: per item the hash writeChunks would return for the same bytes (keeper regions are read
 * through the pinned staging buffer). For hash-driven pre-copy rounds: only chunks whose hash changed
 * since the last round need sending.
 */
export async function hashChunks(opts: HashChunksOptions): Promise<HashChunksResult> {
  const src = idArg('src', opts?.src);
  if (!Array.isArray(opts.items)) throw badArgs('items must be an array');
  const items = opts.items.map((it, i) => ({
    offset: uint(`items[${i}].offset`, it?.offset),
    length: uint(`items[${i}].length`, it?.length, { min: 1 }),
  }));
  return callAsync(() => native().hashChunks({ src, items }));
}

/**
 * Makes this process the child subreaper of its descendants (prctl PR_SET_CHILD_SUBREAPER): processes
 * CRIU restores are re-parented to it when criu exits, so reap() can collect their exit status.
 */
export function becomeSubreaper(): void {
  call(() => native().becomeSubreaper());
}

/**
 * Collects the exit of child `pid` without blocking: null while it runs or when it is not our child,
 * else its exit code or the signal that ended it. Only for pids Node did not spawn (libuv reaps those).
 */
export function reap(pid: number): { code: number | null; signal: number | null } | null {
  const p = uint('pid', pid, { min: 1, max: 0x7fffffff });
  return call(() => native().reap(p));
}

/**
 * Asks libphos in frozen `pid`, through its shed mailbox at `addr` (the freeze reply's `shed`), to drop
 * the whole zero pages of the driver's checkpoint copy (call it after the driver checkpoint, before
 * CRIU dumps). Resolves with done: false when libphos did not answer within `timeoutMs`.
 */
export async function driverCopyShed(pid: number, addr: number, timeoutMs = 2000): Promise<DriverCopyShed> {
  const p = uint('pid', pid, { min: 1, max: 0x7fffffff });
  if (!Number.isSafeInteger(addr) || addr <= 0) throw badArgs(`addr must be a positive integer address, got ${String(addr)}`);
  const t = uint('timeoutMs', timeoutMs, { max: 0xffffffff });
  return callAsync(() => native().driverCopyShed(p, addr, t));
}
