// Starts managed processes so CRIU can dump and restore them cleanly: each in its own session (setsid,
// no controlling terminal), stdin from /dev/null and stdout+stderr appended to a log file (a file, not
// a pipe, so output survives a dump and a restore), optionally with a chosen pid (a per-node reserved
// range avoids pid clashes when a process is restored on another node).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { PhosError } from '../../../proto/src/index.ts';

export interface LaunchOptions {
  argv: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** File that receives stdout and stderr (appended). */
  logPath: string;
  /** Ask the kernel for exactly this pid (via /proc/sys/kernel/ns_last_pid); fails if it is taken. */
  pid?: number;
}

export interface Launched {
  pid: number;
  child: ChildProcess;
  /** Resolves with the exit code, or 128+signal, once the process ends (only while it is our child). */
  exited: Promise<number>;
}

const NS_LAST_PID = '/proc/sys/kernel/ns_last_pid';

export function launch(o: LaunchOptions): Launched {
  const [cmd, ...args] = o.argv;
  if (!cmd) throw new PhosError('BAD_ARGS', 'nothing to run: the command is empty');
  const fd = openSync(o.logPath, 'a');
  try {
    // Another fork on the machine can take the pid between the write and our fork; then we fail
    // cleanly (the caller picks another pid) instead of running under a pid we did not reserve.
    // The kernel's pid cursor is put back afterwards: left at our pid, every later fork on the machine
    // (the CLI, its threads) would take pids of the reserved range, e.g. the tids a restore needs.
    const saved = o.pid !== undefined ? readFileSync(NS_LAST_PID, 'utf8').trim() : null;
    if (o.pid !== undefined) writeFileSync(NS_LAST_PID, String(o.pid - 1));
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { env: o.env ?? process.env, cwd: o.cwd, detached: true, stdio: ['ignore', fd, fd] });
    } finally {
      if (saved !== null) { try { writeFileSync(NS_LAST_PID, saved); } catch { /* best effort */ } }
    }
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
