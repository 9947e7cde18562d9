// The node agent's configuration: a YAML file (or an object) → compileAgentOptions() → every field
// resolved and checked once. Conflicts and bad values are BAD_ARGS naming the field.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { PhosError, NODE_NAME } from '../../../proto/src/index.ts';

export const DEFAULT_AGENT_SOCKET = '/run/phos/agent.sock';
export const DEFAULT_CONTROL_SOCKET = '/run/phos/control.sock';
export const DEFAULT_STATE_DIR = '/var/lib/phos';
/** Above most of what the kernel hands out on a default pid_max of 32768, below it. */
export const DEFAULT_PID_RANGE = '20000-29999';
/** A dumped process's pid stays held this long for a restore on this node (an hour: a checkpoint is usually restored soon or not at all). */
export const DEFAULT_PID_HOLD_SECONDS = 3600;
export const DEFAULT_VA_BASE = 0x600000000000;
export const DEFAULT_VA_SIZE = 64 * 2 ** 30;
export const DEFAULT_CHUNK_SIZE = 2 << 20;
export const DEFAULT_FSYNC = true;

export interface AgentOptions {
  /** libphos's SOCK_SEQPACKET socket (PHOS_AGENT_SOCK of managed processes): an absolute path, or '@name' for an abstract socket (per network namespace). @default DEFAULT_AGENT_SOCKET */
  socket?: string;
  /** The CLI's control socket (JSON lines). @default DEFAULT_CONTROL_SOCKET */
  controlSocket?: string;
  /** Logs of managed processes and the process table live here. @default DEFAULT_STATE_DIR */
  stateDir?: string;
  /** Node name (NODE_NAME pattern). @default the host name, lower-cased, with other characters as '-' */
  node?: string;
  /** Pids handed to managed processes, "MIN-MAX" (inclusive); ranges of different nodes must not overlap. @default DEFAULT_PID_RANGE */
  pidRange?: string;
  /** How long the pid of a process dumped here stays held (a sleeping placeholder) for its restore on this node; 0: not held. @default DEFAULT_PID_HOLD_SECONDS */
  pidHoldSeconds?: number;
  /** libphos.so preloaded into managed processes. @default build/native/hijack/libphos.so of this checkout */
  libphos?: string;
  /** The driver library the agent's checkpoint calls use (pccl's PHOS_LIBCUDA). @default null: dlopen("libcuda.so.1") */
  libcuda?: string | null;
  /** criu binary. @default null: PHOS_CRIU, /usr/local/sbin/criu, or criu on PATH */
  criu?: string | null;
  /** Image defaults. */
  image?: {
    /** fsync chunk files, their directory and the manifest before an image counts as sealed. @default DEFAULT_FSYNC */
    fsync?: boolean;
    /** A restore reads the GPU chunks into device memory while CRIU restores the process; false: every chunk waits behind libphos's gate for the fill after the thaw. @default true */
    prefill?: boolean;
    /**
     * Where a pre-dump's CRIU image is written while the app is frozen; it moves into the image after the
     * thaw. Meant for a huge-page tmpfs (`mount -t tmpfs -o huge=always`): CRIU writes 4 KiB pages one by
     * one, and on an H200 host it dumps a 1.5 GB heap faster there than into /dev/shm (bench/gpu/criu-speed.sh).
     * @default null: CRIU writes into the image directly
     */
    stageDir?: string | null;
    /** Leave whole zero pages of private anonymous memory out of a checkpoint's CRIU image (they read as zero after the restore anyway); see criu-zero.ts. @default true */
    trimZeroPages?: boolean;
    /**
     * After the driver checkpoint, have libphos drop the whole zero pages of the driver's host copy before
     * CRIU dumps it (on an H200, 79 % of it; native/hijack/src/driver-copy.cpp). @default true
     */
    shedDriverCopy?: boolean;
  };
  /** VA region handed to libphos (PHOS_VA_BASE, PHOS_VA_SIZE). Every process of a node gets the same one. */
  va?: { base?: number | string; size?: number | string };
  /** Take the keeper path when a process qualifies (libphos linked, every device byte kept); false: always the safe path. @default true */
  keeperPath?: boolean;
  /** Extra environment for every managed process (e.g. LD_LIBRARY_PATH of a simulated driver). */
  env?: Record<string, string>;
  /** NATS server of the mesh: the agent registers, heartbeats and publishes its processes. @default null: standalone */
  nats?: string | null;
  /** IPv4 address this node's migration transport listens on and other agents connect to. @default null: listen on all, advertise the first external IPv4 */
  dataAddr?: string | null;
}

export interface CompiledAgentOptions {
  socket: string;
  controlSocket: string;
  stateDir: string;
  logsDir: string;
  node: string;
  pidMin: number;
  pidMax: number;
  pidHoldSeconds: number;
  libphos: string;
  libcuda: string | null;
  criu: string | null;
  fsync: boolean;
  prefill: boolean;
  stageDir: string | null;
  trimZeroPages: boolean;
  shedDriverCopy: boolean;
  vaBase: number;
  vaSize: number;
  chunkSize: number;
  env: Record<string, string>;
  keeperPath: boolean;
  nats: string | null;
  dataAddr: string | null;
}

const ROOT = new URL('../../../', import.meta.url).pathname;

function bad(field: string, why: string): PhosError {
  return new PhosError('BAD_ARGS', `agent config: ${field} ${why}`, { remedy: 'fix the agent config file (see services/node-agent/README.md)' });
}

function absPath(field: string, v: unknown, dflt: string): string {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'string' || !isAbsolute(v)) throw bad(field, `must be an absolute path, got ${JSON.stringify(v)}`);
  return v;
}

/** Like absPath, or '@name' (1..106 bytes, no NUL): a Linux abstract socket, one per network namespace. */
function socketPath(field: string, v: unknown, dflt: string): string {
  if (typeof v !== 'string' || !v.startsWith('@')) return absPath(field, v, dflt);
  const n = Buffer.byteLength(v) - 1;
  if (n < 1 || n > 106 || v.includes('\0')) throw bad(field, `must be '@' and a name of 1..106 bytes without NUL, got ${JSON.stringify(v)}`);
  return v;
}

function num(field: string, v: unknown, dflt: number): number {
  if (v === undefined || v === null) return dflt;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) throw bad(field, `must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

function defaultNode(): string {
  const n = hostname().toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+/, '') || 'node';
  return n.slice(0, 63);
}

export function compileAgentOptions(o: AgentOptions = {}): CompiledAgentOptions {
  const stateDir = absPath('stateDir', o.stateDir, DEFAULT_STATE_DIR);
  const node = o.node ?? defaultNode();
  if (!NODE_NAME.test(node)) throw bad('node', `'${node}' does not match ${NODE_NAME}`);
  const m = /^(\d+)-(\d+)$/.exec(o.pidRange ?? DEFAULT_PID_RANGE);
  if (!m) throw bad('pidRange', `must be "MIN-MAX", got ${JSON.stringify(o.pidRange)}`);
  const [pidMin, pidMax] = [Number(m[1]), Number(m[2])];
  let pidLimit = 4194304;
  try { pidLimit = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim()); } catch { /* not Linux: keep the kernel's ceiling */ }
  if (pidMin < 300 || pidMax < pidMin || pidMax >= pidLimit) throw bad('pidRange', `${pidMin}-${pidMax} must satisfy 300 <= MIN <= MAX < pid_max (${pidLimit})`);
  const pidHoldSeconds = o.pidHoldSeconds ?? DEFAULT_PID_HOLD_SECONDS;
  if (!Number.isInteger(pidHoldSeconds) || pidHoldSeconds < 0) throw bad('pidHoldSeconds', `must be a whole number of seconds >= 0, got ${JSON.stringify(o.pidHoldSeconds)}`);
  const socket = socketPath('socket', o.socket, DEFAULT_AGENT_SOCKET);
  const controlSocket = absPath('controlSocket', o.controlSocket, DEFAULT_CONTROL_SOCKET);
  if (socket === controlSocket) throw bad('controlSocket', `must differ from socket (${socket})`);
  const vaBase = num('va.base', o.va?.base, DEFAULT_VA_BASE);
  if (vaBase % DEFAULT_CHUNK_SIZE !== 0) throw bad('va.base', 'must be 2 MiB aligned');
  const env = o.env ?? {};
  for (const [k, v] of Object.entries(env)) if (typeof v !== 'string') throw bad(`env.${k}`, 'must be a string');
  const fsync = o.image?.fsync ?? DEFAULT_FSYNC;
  if (typeof fsync !== 'boolean') throw bad('image.fsync', 'must be true or false');
  const prefill = o.image?.prefill ?? true;
  if (typeof prefill !== 'boolean') throw bad('image.prefill', 'must be true or false');
  const trimZeroPages = o.image?.trimZeroPages ?? true;
  if (typeof trimZeroPages !== 'boolean') throw bad('image.trimZeroPages', 'must be true or false');
  const shedDriverCopy = o.image?.shedDriverCopy ?? true;
  if (typeof shedDriverCopy !== 'boolean') throw bad('image.shedDriverCopy', 'must be true or false');
  return {
    socket, controlSocket, stateDir, logsDir: join(stateDir, 'logs'), node, pidMin, pidMax, pidHoldSeconds,
    libphos: absPath('libphos', o.libphos, join(ROOT, 'build/native/hijack/libphos.so')),
    libcuda: o.libcuda ? absPath('libcuda', o.libcuda, '') : null,
    criu: o.criu ?? null, fsync, prefill, stageDir: o.image?.stageDir ? absPath('image.stageDir', o.image.stageDir, '') : null, trimZeroPages, shedDriverCopy,
    vaBase, vaSize: num('va.size', o.va?.size, DEFAULT_VA_SIZE), chunkSize: DEFAULT_CHUNK_SIZE, env,
    keeperPath: o.keeperPath ?? true,
    nats: o.nats ?? null,
    dataAddr: dataAddr(o.dataAddr),
  };
}

function dataAddr(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || !/^\d{1,3}(\.\d{1,3}){3}$/.test(v)) throw bad('dataAddr', `must be an IPv4 address, got ${JSON.stringify(v)}`);
  return v;
}

/** Reads a YAML config file (keys as AgentOptions). */
export function loadAgentConfig(path: string): AgentOptions {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (err) {
    throw new PhosError('NOT_FOUND', `agent config ${path} cannot be read: ${(err as Error).message}`, { remedy: 'pass an existing file to --config' });
  }
  let v: unknown;
  try { v = parseYaml(text); } catch (err) { throw bad(path, `is not valid YAML: ${(err as Error).message}`); }
  if (v === null || v === undefined) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw bad(path, 'must be a YAML map');
  return v as AgentOptions;
}
