// The agent-side lifecycle of one managed process: its states, the table of allowed moves, and one
// transition() that checks the table, logs { from, to, reason } and tells listeners. Who drives each
// move is the checkpoint and restore procedures; the registry drives `exited`.
import type { Logger } from '../../../common/src/index.ts';
import { PhosError, type ProcessStateName } from '../../../proto/src/index.ts';

export type ProcessState = ProcessStateName;

/** Doc per state: what is happening, who advances it, where failure goes. */
export const PROCESS_STATE_DOCS: Readonly<Record<ProcessState, string>> = Object.freeze({
  running: 'the app runs; a checkpoint moves it to freezing; the registry moves it to exited when it ends',
  freezing: 'the agent is stopping the app\'s CUDA work (libphos freeze or driver lock); failure → thawing (rollback)',
  frozen: 'CUDA work stopped and the driver checkpointed; next dumping, or thawing on failure',
  dumping: 'CRIU dumps the process; dump → dumped (CRIU killed it), pre-dump or failure → thawing',
  thawing: 'driver restore + unlock (and libphos thaw); → running, or failed when the app cannot be resumed',
  restoring: 'CRIU restores the image (a new record); → thawing, or failed',
  dumped: 'terminal: the image holds the process; CRIU ended it',
  exited: 'terminal: the process ended on its own',
  failed: 'terminal: the process is in an unknown state (resume failed); it is killed',
});

const TERMINAL: readonly ProcessState[] = ['dumped', 'exited', 'failed'];

/** Allowed moves. Every non-terminal state may also go to exited (the app can die any time). */
export const PROCESS_TRANSITIONS: Readonly<Record<ProcessState, readonly ProcessState[]>> = Object.freeze({
  running: ['freezing', 'exited'],
  freezing: ['frozen', 'thawing', 'running', 'exited'],
  frozen: ['dumping', 'thawing', 'exited'],
  dumping: ['thawing', 'dumped', 'exited'],
  thawing: ['running', 'failed', 'exited'],
  restoring: ['thawing', 'failed', 'exited'],
  dumped: [],
  exited: [],
  failed: [],
});

export class IllegalStateError extends PhosError {
  constructor(readonly from: ProcessState, readonly to: ProcessState, what: string) {
    super('ILLEGAL_STATE', `${what}: cannot go from ${from} to ${to}`, { details: { from, to } });
  }
}

export interface TransitionEvent { from: ProcessState; to: ProcessState; reason: string }

export class ProcessMachine {
  private current: ProcessState;
  private readonly listeners: ((e: TransitionEvent) => void)[] = [];

  constructor(private readonly what: string, initial: ProcessState, private readonly log: Logger) {
    this.current = initial;
  }

  get state(): ProcessState {
    return this.current;
  }

  get terminal(): boolean {
    return TERMINAL.includes(this.current);
  }

  can(to: ProcessState): boolean {
    return PROCESS_TRANSITIONS[this.current].includes(to);
  }

  transition(to: ProcessState, reason: string): void {
    const from = this.current;
    if (!this.can(to)) throw new IllegalStateError(from, to, this.what);
    this.current = to;
    this.log.info({ from, to, reason }, 'process state');
    for (const l of this.listeners) l({ from, to, reason });
  }

  onTransition(fn: (e: TransitionEvent) => void): void {
    this.listeners.push(fn);
  }
}
