// The agent's one edge to CRIU: builds command lines, runs criu, and turns its failures into PhosError
// (CRIU_MISSING / CRIU_FAILED) that quote the log lines saying why. Nothing else in phos spawns criu.
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CRIU_KDAT_DIR, CRIU_MIN_VERSION, criuBinary as resolveCriu, parseCriuVersion } from '../../../common/src/index.ts';
import { PhosError } from '../../../proto/src/index.ts';

export { CRIU_MIN_VERSION };

export interface CriuOptions {
  /** criu binary. @default PHOS_CRIU, else /usr/local/sbin/criu when present, else 'criu' on PATH */
  bin?: string;
  /** Seconds criu may wait for the tasks to freeze. @default 30 (criu's 10 is short for big processes) */
  timeoutSec?: number;
}

export function criuBinary(opts: CriuOptions = {}): string {
  return resolveCriu(opts.bin);
}

// x86 debug registers set through ptrace never fire inside Firecracker guests (seen on kernel 6.18 VMs,
// both the dev machines and the H200 machine): CRIU's parasite cure then waits forever for a breakpoint
// trap. Fault point 130 (FI_NO_BREAKPOINTS) makes CRIU trace the parasite's exit with PTRACE_SYSCALL
// instead, which works everywhere at a cost of a few syscall stops. An explicit CRIU_FAULT wins.
const CRIU_ENV = { ...process.env, CRIU_FAULT: process.env.CRIU_FAULT ?? '130' };

function exec(bin: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(bin, args, { encoding: 'utf8', maxBuffer: 16 << 20, env: CRIU_ENV }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

/** Versions already checked, by binary and its size and mtime (a replaced binary is checked again). */
const checked = new Map<string, string>();

/** The version criu reports; refuses a missing or too old criu with the install remedy. */
export async function criuVersion(opts: CriuOptions = {}): Promise<string> {
  const bin = criuBinary(opts);
  // Spawning criu costs tens of ms, and a restore inside a migration's downtime asks every time.
  let stamp = '';
  try { const st = statSync(bin); stamp = `${bin}:${st.size}:${st.mtimeMs}`; } catch { /* not a path: ask criu */ }
  const known = stamp ? checked.get(stamp) : undefined;
  if (known) return known;
  const r = await exec(bin, ['--version']);
  const v = parseCriuVersion(r.out);
  if (!v) throw new PhosError('CRIU_MISSING', `criu not found (${bin})`);
  const { version } = v;
  if (!v.ok) {
    throw new PhosError('CRIU_MISSING', `criu ${version} found (${bin}); phos needs >= ${CRIU_MIN_VERSION.join('.')}`, { details: { version, bin } });
  }
  if (stamp) checked.set(stamp, version);
  return version;
}

/** The lines of a criu log that explain a failure (errors first, then the tail). */
export function criuLogReason(logPath: string): string {
  if (!existsSync(logPath)) return 'no log written';
  const lines = readFileSync(logPath, 'utf8').split('\n');
  const errors = lines.filter((l) => /Error|BUG|fail/.test(l)).slice(-4);
  return (errors.length ? errors : lines.slice(-4)).map((l) => l.trim()).join(' | ');
}

function readTail(path: string): string {
  try { return readFileSync(path, 'utf8').slice(-20000); } catch { return ''; }
}

/**
 * Keeps CRIU_KDAT_DIR a folder only this user can write, so criu may keep its kernel-probe cache there
 * and nobody else can plant one. Another owner's folder, or a looser one, is replaced. Best effort: where
 * it cannot be made, criu probes the kernel on each run, as it would anyway.
 */
function ensureKdatDir(): void {
  try {
    const st = lstatSync(CRIU_KDAT_DIR, { throwIfNoEntry: false });
    const ours = st !== undefined && st.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o077) === 0;
    if (ours) return;
    if (st) rmSync(CRIU_KDAT_DIR, { recursive: true, force: true });
    mkdirSync(CRIU_KDAT_DIR, { mode: 0o700 });
  } catch {
    // no /dev/shm, or not allowed: only slower
  }
}

/**
 * Has criu write its kernel-probe cache now if there is none (a fresh boot or machine): otherwise the
 * first dump or restore probes the kernel inside the app's stall (41 ms on an H200 host, in the first
 * PyTorch pre-dump of every session). `criu check` probes and saves it. Best effort; resolves true when
 * this call made the cache. `cache` is for tests (criu's own path is compiled in).
 */
export async function primeCriuCache(opts: CriuOptions = {}, cache = join(CRIU_KDAT_DIR, 'criu.kdat')): Promise<boolean> {
  if (existsSync(cache)) return false;
  ensureKdatDir();
  const r = await exec(criuBinary(opts), ['check']);
  return r.code === 0 && existsSync(cache);
}

async function runCriu(verb: string, args: string[], dir: string, what: string, opts: CriuOptions): Promise<number> {
  const bin = criuBinary(opts);
  ensureKdatDir();
  const log = `${verb}.log`;
  const t0 = performance.now();
  // -v3 (info): errors, warnings and each step's outline. -v4 adds a debug line per page-pipe buffer and
  // CRIU writes every line with its own write(2): 17k lines for a 0.75 GB dump, about a tenth of the dump
  // time of a 1.5 GB heap on the H200 (bench/gpu/criu-speed.sh).
  const r = await exec(bin, [verb, '-D', dir, '-o', log, '-v3', ...args]);
  const ms = performance.now() - t0;
  if (r.code !== 0) {
    const logPath = join(dir, log);
    const reason = criuLogReason(logPath);
    if (/No space left|ENOSPC|errno 28\b|\(28\)/.test(`${reason}\n${r.out}`) || /No space left/.test(readTail(logPath))) {
      throw new PhosError('DISK_FULL', `criu ${verb} of ${what}: ${dir} ran out of space (${reason})`, { details: { exit: r.code, log: logPath, dir } });
    }
    throw new PhosError('CRIU_FAILED', `criu ${verb} of ${what} failed: ${criuLogReason(logPath)}`, {
      remedy: `read ${logPath}`, details: { exit: r.code, log: logPath, output: r.out.slice(-2000) },
    });
  }
  return ms;
}

export interface DumpOptions extends CriuOptions {
  pid: number;
  dir: string;
  /** Keep the process running after the dump (a pre-dump / snapshot). @default false */
  leaveRunning?: boolean;
  /** Leave the dumped tasks stopped (SIGSTOP) instead of killing them; the caller kills or resumes. @default false */
  leaveStopped?: boolean;
}

/** Dumps the process tree rooted at pid into dir; without leaveRunning criu kills it afterwards. */
export async function criuDump(o: DumpOptions): Promise<{ ms: number }> {
  const args = ['-t', String(o.pid), '--timeout', String(o.timeoutSec ?? 30)];
  if (o.leaveRunning) args.push('--leave-running');
  else if (o.leaveStopped) args.push('--leave-stopped');
  return { ms: await runCriu('dump', args, o.dir, `pid ${o.pid}`, o) };
}

export interface RestoreOptions extends CriuOptions {
  dir: string;
}

/** Restores the image in dir detached from criu; resolves to the restored root pid. */
export async function criuRestore(o: RestoreOptions): Promise<{ pid: number; ms: number }> {
  const pidfile = join(o.dir, 'restored.pid');
  const ms = await runCriu('restore', ['-d', '--pidfile', pidfile, '--timeout', String(o.timeoutSec ?? 30)], o.dir, `image ${o.dir}`, o);
  const pid = Number(readFileSync(pidfile, 'utf8').trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new PhosError('CRIU_FAILED', `criu restore of ${o.dir} wrote no pid`);
  return { pid, ms };
}
