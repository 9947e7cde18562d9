// Starts managed processes so CRIU can dump and restore them cleanly: each in its own session (setsid,
// no controlling terminal), stdin from /dev/null and stdout+stderr appended to a log file (a file, not
// a pipe, so output survives a dump and a restore), optionally with a chosen pid (a per-node reserved
// range avoids pid clashes when a process is restored on another node).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PhosError } from '../../../proto/src/index.ts';

export interface LaunchOptions {
  argv: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** File that receives stdout and stderr (appended). */
  logPath: string;
  /** Ask the kernel for exactly this pid (via /proc/sys/kernel/ns_last_pid); fails if it is taken. */
  pid?: number;
  /** What ps shows as the command (argv[0]); the executable stays argv[0] of `argv`. */
  argv0?: string;
}

export interface Launched {
  pid: number;
  child: ChildProcess;
  /** Resolves with the exit code, or 128+signal, once the process ends (only while it is our child). */
  exited: Promise<number>;
}

const NS_LAST_PID = '/proc/sys/kernel/ns_last_pid';

/** One agent at a time moves the machine's pid cursor (agents of several nodes can share a machine). */
const CURSOR_LOCK = join(tmpdir(), 'phos-pid-cursor.lock');
const CURSOR_LOCK_STALE_MS = 10_000;

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Forks with the kernel's pid cursor set just below `pid`, then puts the cursor back. Another agent doing
 * the same at once would save our cursor as its own and restore it later, sending the machine's forks
 * into a reserved range: an exclusive lock file (held for the few ms of write-fork-restore) prevents it.
 */
function withPidCursor<T>(pid: number, fork: () => T): T {
  let lock: number | null = null;
  for (const end = Date.now() + 5000; lock === null;) {
    try {
      lock = openSync(CURSOR_LOCK, 'wx');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try { if (Date.now() - statSync(CURSOR_LOCK).mtimeMs > CURSOR_LOCK_STALE_MS) unlinkSync(CURSOR_LOCK); } catch { /* released meanwhile */ }
      if (Date.now() > end) throw new PhosError('TIMEOUT', `another agent holds ${CURSOR_LOCK}; cannot reserve pid ${pid}`, { remedy: `remove ${CURSOR_LOCK} if no agent is starting a process` });
      sleepSync(2);
    }
  }
  const saved = readFileSync(NS_LAST_PID, 'utf8').trim();
  try {
    writeFileSync(NS_LAST_PID, String(pid - 1));
    return fork();
  } finally {
    try { writeFileSync(NS_LAST_PID, saved); } catch { /* best effort */ }
    closeSync(lock);
    try { unlinkSync(CURSOR_LOCK); } catch { /* gone */ }
  }
}

export function launch(o: LaunchOptions): Launched {
  const [cmd, ...args] = o.argv;
  if (!cmd) throw new PhosError('BAD_ARGS', 'nothing to run: the command is empty');
  const fd = openSync(o.logPath, 'a');
  try {
    // Another fork on the machine can take the pid between the write and our fork; then we fail
    // cleanly (the caller picks another pid) instead of running under a pid we did not reserve.
    // The kernel's pid cursor is put back afterwards: left at our pid, every later fork on the machine
    // (the CLI, its threads) would take pids of the reserved range, e.g. the tids a restore needs.
    const start = () => spawn(cmd, args, { env: o.env ?? process.env, cwd: o.cwd, detached: true, stdio: ['ignore', fd, fd], argv0: o.argv0 });
    const child: ChildProcess = o.pid === undefined ? start() : withPidCursor(o.pid, start);
    const exited = new Promise<number>((resolve) => {
      child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? signalNumber(signal) : 0)));
      child.once('error', () => resolve(127));
    });
    if (child.pid === undefined) throw new PhosError('BAD_ARGS', `cannot start '${cmd}'`, { remedy: 'check the command exists and is executable' });
    if (o.pid !== undefined && child.pid !== o.pid) {
      child.kill('SIGKILL');
      throw new PhosError('ILLEGAL_STATE', `pid ${o.pid} was taken before phos could start '${cmd}' (got ${child.pid})`, { remedy: 'retry; the agent picks the next free pid of its range' });
    }
    return { pid: child.pid, child, exited };
  } finally {
    closeSync(fd);
  }
}

function signalNumber(sig: NodeJS.Signals): number {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGSEGV: 11, SIGTERM: 15, SIGABRT: 6 };
  return table[sig] ?? 0;
}
