// The managed processes of this node: starts them (launcher, a pid from the node's reserved range),
// adopts restored ones, tracks their exit, and answers ps/logs. Each record carries its ProcessMachine.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Logger } from '../../../common/src/index.ts';
import * as pccl from '../../../native/pccl/pccl.ts';
import { PhosError, type ProcessInfo } from '../../../proto/src/index.ts';
import type { CompiledAgentOptions } from './agent-options.ts';
import { launch, type Launched } from './launcher.ts';
import { childrenOf } from './proc.ts';
import { ProcessMachine, type ProcessState } from './process-machine.ts';

export interface ProcessRecord {
  pid: number;
  job: string;
  argv: string[];
  logPath: string;
  startedAt: string;
  vaBase: number;
  machine: ProcessMachine;
  exitCode: number | null;
  restoredFrom: string | null;
}

export interface StartRequest { argv: string[]; job?: string; cwd?: string; env?: Record<string, string>; preload?: boolean }

/** How often orphans re-parented to the agent are looked for (see sweepOrphans). */
const ORPHAN_SWEEP_MS = 2000;

/** How many pids of the range a start tries when another fork takes the chosen one first. */
const START_ATTEMPTS = 8;

/** Polls (200 ms apart) a zombie our waitpid cannot reap before its exit status counts as unknown. */
const ZOMBIE_TICKS = 25;

export class ProcessRegistry {
  private readonly records = new Map<number, ProcessRecord>();
  private cursor: number;
  private readonly pollers = new Map<number, NodeJS.Timeout>();
  /** Placeholders holding the pids of processes dumped here, until a restore claims them (see hold()). */
  private readonly holds = new Map<number, Launched>();
  /** Pids holdWhenGone waits on (the dumped process not reaped yet); a restore that comes first cancels. */
  private readonly holdsToCome = new Set<number>();
  /** Told when a process ends (the agent releases its keeper memory). */
  onEnded: (pid: number) => void = () => {};

  /** Whether the agent is the subreaper of what CRIU restores (see becomeReaper). */
  private reaper = false;
  private sweeper: NodeJS.Timeout | null = null;
  /** Zombie children seen by the last sweep, not ours by spawn or restore. */
  private orphansSeen = new Set<number>();

  constructor(private readonly o: CompiledAgentOptions, private readonly log: Logger) {
    this.cursor = o.pidMin;
    mkdirSync(o.logsDir, { recursive: true });
  }

  /**
   * Makes the agent the child subreaper of the processes it manages: a restored process (CRIU's child,
   * re-parented when criu exits) then becomes the agent's, so its exit status is known and its pid is
   * freed at once, also where init does not reap (a container without one: there a dumped restored
   * process stayed a zombie and its restore was refused, pid in use).
   */
  becomeReaper(): void {
    try {
      pccl.becomeSubreaper();
      this.reaper = true;
      this.sweeper = setInterval(() => this.sweepOrphans(), ORPHAN_SWEEP_MS);
      this.sweeper.unref();
    } catch (err) {
      this.log.warn({ err }, 'cannot become the subreaper of restored processes; their exit status stays unknown');
    }
  }

  /**
   * As subreaper the agent also inherits orphans (a managed app's daemonized children) that init would
   * have reaped. A zombie child that is not a restored process we watch is collected once two sweeps saw
   * it: a child Node spawned itself is reaped by libuv within one turn of the loop, never seen twice.
   */
  private sweepOrphans(): void {
    const now = new Set<number>();
    for (const pid of childrenOf('self')) {
      if (this.pollers.has(pid) || !/\) Z /.test(safeStat(pid, ''))) continue;
      if (!this.orphansSeen.has(pid)) { now.add(pid); continue; }
      const r = pccl.reap(pid);
      if (r) this.log.debug({ pid, ...r }, 'reaped an orphan re-parented to the agent');
    }
    this.orphansSeen = now;
  }

  isManaged(pid: number): boolean {
    const r = this.records.get(pid);
    return r !== undefined && !r.machine.terminal;
  }

  /** The live record of pid, or NOT_MANAGED. */
  managed(pid: number): ProcessRecord {
    const r = this.records.get(pid);
    if (!r || r.machine.terminal) {
      const why = r ? `pid ${pid} is ${r.machine.state}` : existsSync(`/proc/${pid}`) ? `pid ${pid} was not started by phos` : `no process ${pid}`;
      throw new PhosError('NOT_MANAGED', `${why}; phos checkpoints only processes it started`, { details: { pid } });
    }
    return r;
  }

  /** A record by pid or job name (the newest with that job). */
  find(ref: string): ProcessRecord {
    const byPid = /^\d+$/.test(ref) ? this.records.get(Number(ref)) : undefined;
    if (byPid) return byPid;
    const byJob = [...this.records.values()].filter((r) => r.job === ref).pop();
    if (byJob) return byJob;
    throw new PhosError('NOT_FOUND', `no managed process '${ref}' on this node`, { remedy: 'list them with phos ps' });
  }

  list(all: boolean): ProcessRecord[] {
    return [...this.records.values()].filter((r) => all || !r.machine.terminal || r.machine.state === 'exited' || r.machine.state === 'dumped');
  }

  /** The next free pid of the range (not in /proc, not recorded), wrapping around. */
  private nextPid(): number {
    const n = this.o.pidMax - this.o.pidMin + 1;
    for (let i = 0; i < n; i++) {
      const pid = this.cursor;
      this.cursor = pid >= this.o.pidMax ? this.o.pidMin : pid + 1;
      if (!this.records.has(pid) && !existsSync(`/proc/${pid}`)) return pid;
    }
    throw new PhosError('ILLEGAL_STATE', `every pid of ${this.o.pidMin}-${this.o.pidMax} is in use`, { remedy: 'widen pidRange in the agent config' });
  }

  start(req: StartRequest, env: Record<string, string>): ProcessRecord {
    if (req.argv.length === 0) throw new PhosError('BAD_ARGS', 'nothing to run: give a command after --');
    const job = req.job ?? basename(req.argv[0]!);
    let lastErr: unknown;
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      const pid = this.nextPid();
      // Pids come back (a process migrated away frees its pid here): the start time keeps each log its own.
      const logPath = join(this.o.logsDir, `${job.replace(/[^A-Za-z0-9_.-]/g, '_')}-${pid}-${Date.now().toString(36)}.log`);
      try {
        const launched = launch({ argv: req.argv, env: { ...env, PHOS_JOB: job }, cwd: req.cwd, logPath, pid });
        const r = this.add({ pid, job, argv: req.argv, logPath, restoredFrom: null });
        launched.exited.then((code) => this.ended(pid, code), () => this.ended(pid, null));
        return r;
      } catch (err) {
        lastErr = err;
        if (!(err instanceof PhosError && err.code === 'ILLEGAL_STATE' && /was taken/.test(err.message))) throw err;
        this.log.warn({ pid, attempt }, 'pid taken before the launch; trying the next one');
      }
    }
    throw lastErr;
  }

  private add(x: { pid: number; job: string; argv: string[]; logPath: string; restoredFrom: string | null }, initial: ProcessState = 'running'): ProcessRecord {
    const log = this.log.child({ pid: x.pid });
    const r: ProcessRecord = { ...x, startedAt: new Date().toISOString(), vaBase: this.o.vaBase, machine: new ProcessMachine(`pid ${x.pid}`, initial, log), exitCode: null };
    this.records.set(x.pid, r);
    log.info({ job: x.job, argv: x.argv, log: x.logPath, restoredFrom: x.restoredFrom }, initial === 'running' ? 'process started' : 'process adopted');
    return r;
  }

  /**
   * Waits (up to timeoutMs) until a process this agent ended is reaped: its record terminal and its pid
   * gone from /proc. Returns at once for a pid it never managed; never throws (adoptRestoring judges).
   */
  async settled(pid: number, timeoutMs: number): Promise<void> {
    await this.unhold(pid);
    endOrphanHold(pid, this.log);
    for (const end = Date.now() + timeoutMs; Date.now() < end;) {
      const old = this.records.get(pid);
      if (!old || (old.machine.terminal && !existsSync(`/proc/${pid}`))) return;
      if (!old.machine.terminal && old.machine.state === 'running') return; // alive and well: a real clash
      await new Promise((res) => setTimeout(res, 10));
    }
  }

  /** A record for a process CRIU is about to restore (state restoring); the pid must be free and in no record. */
  adoptRestoring(x: { pid: number; job: string; argv: string[]; logPath: string; restoredFrom: string }): ProcessRecord {
    const old = this.records.get(x.pid);
    if ((old && !old.machine.terminal) || existsSync(`/proc/${x.pid}`)) {
      const holder = commOf(x.pid);
      throw new PhosError('ILLEGAL_STATE', `pid ${x.pid} is in use on this node${holder ? ` (by '${holder}')` : ''}; the image cannot be restored under it`, { remedy: 'stop the process holding that pid, or restore on another node', details: { pid: x.pid } });
    }
    return this.add(x, 'restoring');
  }

  /** Polls /proc for a process the agent did not fork (restored by CRIU). */
  watch(pid: number): void {
    let zombieTicks = 0;
    const t = setInterval(() => {
      const done = (code: number | null) => { clearInterval(t); this.pollers.delete(pid); this.ended(pid, code); };
      // Looked at before waitpid: a process that ends between the two is reaped on the next tick, not
      // taken for someone else's child (that race once reported a clean exit as status unknown).
      const vanished = !existsSync(`/proc/${pid}`);
      const zombie = !vanished && /\) Z /.test(safeStat(pid));
      const r = this.reaper ? pccl.reap(pid) : null;
      if (r) done(r.code ?? 128 + (r.signal ?? 0));
      // Not our child (no subreaper, or the agent restarted): its status is unknown, only that it ended.
      else if (vanished || (zombie && !this.reaper)) done(null);
      // A zombie leader whose other threads are still exiting cannot be reaped yet (waitpid says 0): wait
      // for them, and give up on the status only if it stays unreapable for a few seconds (not our child).
      else if (zombie && ++zombieTicks >= ZOMBIE_TICKS) done(null);
    }, 200);
    t.unref();
    this.pollers.set(pid, t);
  }

  /** Forgets a record that never came to life (a restore that failed before CRIU made the process). */
  drop(pid: number): void {
    this.records.delete(pid);
  }

  private ended(pid: number, code: number | null): void {
    const r = this.records.get(pid);
    if (!r) return;
    r.exitCode = code;
    // CRIU ends a dumped process itself: the dump procedure moves it to dumped and frees its memory once sealed.
    if (r.machine.state === 'dumping' || r.machine.state === 'dumped') return;
    if (r.machine.can('exited')) r.machine.transition('exited', code === null ? 'process gone' : `exit status ${code}`);
    this.onEnded(pid);
  }

  /**
   * Keeps the pid of a process CRIU just ended here taken by a sleeping placeholder, so the machine's
   * forks cannot take it before the image is restored (the kernel's pid cursor walks through every
   * range; a compiler started a second later can hold the pid for longer than a restore waits).
   * Only for a dump that stays on this node: a migrated process is restored under the same pid elsewhere,
   * maybe on this machine (network-namespace nodes). Best effort: a pid already taken is not held.
   */
  async holdWhenGone(pid: number): Promise<void> {
    if (this.o.pidHoldSeconds <= 0 || this.holds.has(pid) || this.holdsToCome.has(pid)) return;
    this.holdsToCome.add(pid);
    for (const end = Date.now() + 10_000; existsSync(`/proc/${pid}`);) {
      if (Date.now() > end) { this.log.warn({ pid }, 'the dumped process was not reaped within 10 s; its pid is not held'); this.holdsToCome.delete(pid); return; }
      await new Promise((res) => setTimeout(res, 2));
    }
    // A restore of this pid came while the process was still being reaped: it takes the pid, not us.
    if (!this.holdsToCome.delete(pid)) return;
    try {
      const h = launch({ argv: ['sleep', String(this.o.pidHoldSeconds)], logPath: '/dev/null', pid, argv0: 'phos-pid-hold' });
      this.holds.set(pid, h);
      void h.exited.then(() => { if (this.holds.get(pid) === h) this.holds.delete(pid); });
      this.log.debug({ pid, seconds: this.o.pidHoldSeconds }, 'holding the pid of a dumped process for its restore');
    } catch (err) {
      this.log.warn({ pid, err }, 'could not hold the pid of a dumped process; a restore here may find it taken');
    }
  }

  /** Ends the placeholder of pid (if any) and waits until it is reaped, so the pid is free again. */
  private async unhold(pid: number): Promise<void> {
    this.holdsToCome.delete(pid);
    const h = this.holds.get(pid);
    if (!h) return;
    this.holds.delete(pid);
    h.child.kill('SIGKILL');
    await h.exited;
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    for (const t of this.pollers.values()) clearInterval(t);
    for (const h of this.holds.values()) h.child.kill('SIGKILL');
    this.holds.clear();
    this.holdsToCome.clear();
  }

  info(r: ProcessRecord, linked: boolean, allocations: number, keptBytes: number): ProcessInfo {
    return {
      pid: r.pid, job: r.job, state: r.machine.state, argv: r.argv, logPath: r.logPath, startedAt: r.startedAt, vaBase: r.vaBase,
      linked, allocations, keptBytes, exitCode: r.exitCode, restoredFrom: r.restoredFrom,
    };
  }
}

/**
 * A placeholder left by an agent that is gone (its parent is now init) holds the pid for nobody: end it.
 * One whose agent lives is left alone; the restore then reports the clash.
 */
function endOrphanHold(pid: number, log: Logger): void {
  try {
    if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] !== 'phos-pid-hold') return;
    const ppid = Number(/\) \S+ (\d+)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1]);
    if (ppid !== 1) return;
    process.kill(pid, 'SIGKILL');
    log.info({ pid }, 'ended the pid placeholder of an agent that is gone');
  } catch { /* gone meanwhile */ }
}

/** The command name of pid, or null when it is gone. */
function commOf(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}

function safeStat(pid: number, gone = ') Z '): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return gone;
  }
}
