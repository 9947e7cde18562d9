// The migration lifecycle: its states, which moves are legal, and the one transition() that checks the
// table, writes the record to KV with a revision check (so exactly one owner advances a migration), logs
// { from, to, reason } and publishes the new state as a progress event.
import { PhosError, PROTO_VERSION, subjects, type Message, type MigrationPhase } from '../../../proto/src/index.ts';
import type { Logger } from '../../../common/src/index.ts';
import type { Bus, KvStore } from './bus.ts';
import type { MigrationTelemetry } from './telemetry.ts';

export type MigrationState = Message<'migration-state'>;

/**
 * Allowed next phases. Before the target resumes (pending .. cutover) every failure ends in
 * 'rolled-back' or 'cancelled': the source thaws and continues. From 'restoring' on, the target may
 * already run; a failure there is 'failed' and the source keeps its copy until post-copy completes.
 */
export const MIGRATION_TRANSITIONS: Readonly<Record<MigrationPhase, readonly MigrationPhase[]>> = Object.freeze({
  /** Accepted and persisted; nothing touched yet. Advanced by the runner. */
  pending: ['preparing-target', 'cancelled', 'rolled-back'],
  /** Target reserves a GPU, the VA region and keeper memory. */
  'preparing-target': ['pre-copy', 'cancelled', 'rolled-back'],
  /** Hash-driven rounds stream GPU memory while the source runs. */
  'pre-copy': ['cutover', 'cancelled', 'rolled-back'],
  /** Source frozen: final dirty round or post-copy decision, driver checkpoint, CRIU dump, CPU image sent. */
  cutover: ['restoring', 'rolled-back', 'failed'],
  /** Target: CRIU restore, driver restore, thaw. A target that fails before it released the app: the source takes it back (rolled-back). */
  restoring: ['post-copy', 'succeeded', 'rolled-back', 'failed'],
  /** Target runs; remaining chunks stream in. */
  'post-copy': ['succeeded', 'failed'],
  succeeded: [],
  failed: [],
  cancelled: [],
  'rolled-back': [],
});

export const TERMINAL_PHASES: readonly MigrationPhase[] = ['succeeded', 'failed', 'cancelled', 'rolled-back'];

export function isTerminal(p: MigrationPhase): boolean {
  return TERMINAL_PHASES.includes(p);
}

export class IllegalStateError extends PhosError {
  constructor(id: string, from: MigrationPhase, to: MigrationPhase) {
    super('ILLEGAL_STATE', `migration ${id} cannot go from ${from} to ${to}`, { details: { id, from, to } });
  }
}

export function checkTransition(s: MigrationState, to: MigrationPhase): void {
  if (!MIGRATION_TRANSITIONS[s.phase].includes(to)) throw new IllegalStateError(s.id, s.phase, to);
}

/** One migration record as the coordinator holds it: value + KV revision. */
export class MigrationRecord {
  /** An abort is under way (cancel, timeout or failure): the others stand down. */
  aborting = false;
  /** Spans and metrics of this migration (set by the coordinator that drives it). */
  telemetry: MigrationTelemetry | null = null;

  constructor(
    private readonly kv: KvStore,
    private readonly bus: Bus,
    private readonly log: Logger,
    public state: MigrationState,
    public revision: number,
  ) {}

  static async create(kv: KvStore, bus: Bus, log: Logger, init: Omit<MigrationState, 'v' | 'phase' | 'startedAt' | 'updatedAt'>): Promise<MigrationRecord> {
    const now = Date.now();
    const state: MigrationState = { ...init, v: PROTO_VERSION, phase: 'pending', startedAt: now, updatedAt: now };
    const revision = await kv.create('migration-state', init.id, state);
    const rec = new MigrationRecord(kv, bus, log.child({ migrationId: init.id }), state, revision);
    rec.log.info({ pid: init.pid, from: init.from, to: init.to }, 'migration accepted');
    rec.emit();
    return rec;
  }

  /** Writes of this record, one at a time (a progress event and a transition must not race on the revision). */
  private chain: Promise<unknown> = Promise.resolve();

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** Moves to `to`, merging `patch`; throws IllegalStateError or ILLEGAL_STATE on a concurrent writer. */
  transition(to: MigrationPhase, reason: string, patch: Partial<MigrationState> = {}): Promise<void> {
    return this.serial(() => this.doTransition(to, reason, patch));
  }

  private async doTransition(to: MigrationPhase, reason: string, patch: Partial<MigrationState>): Promise<void> {
    checkTransition(this.state, to);
    const next: MigrationState = { ...this.state, ...patch, phase: to, updatedAt: Date.now() };
    this.revision = await this.kv.update('migration-state', this.state.id, next, this.revision);
    this.log.info({ from: this.state.phase, to, reason }, 'migration transition');
    this.state = next;
    this.emit();
    if (isTerminal(to)) void this.telemetry?.end(to, next.downtimeMs, next.error);
    else this.telemetry?.phase(to);
  }

  /** Progress within a phase (bytes, rates), same revision discipline. */
  progress(patch: Partial<MigrationState>): Promise<void> {
    return this.serial(() => this.doProgress(patch));
  }

  private async doProgress(patch: Partial<MigrationState>): Promise<void> {
    if (isTerminal(this.state.phase)) return;
    const next: MigrationState = { ...this.state, ...patch, phase: this.state.phase, updatedAt: Date.now() };
    this.revision = await this.kv.update('migration-state', this.state.id, next, this.revision);
    this.state = next;
    this.emit();
    this.telemetry?.progress(next);
  }

  private emit(): void {
    this.bus.publish(subjects.migrationEvents(this.state.id), 'migration-state', this.state);
  }
}
