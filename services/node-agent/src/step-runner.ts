// Runs a procedure: an ordered list of named steps with run and undo. Each step is logged with its
// duration; on a failure the completed steps are undone in reverse (a failing undo is logged and kept
// in details.rollback, never replacing the first error), and the procedure ends in one finish().
import type { Logger } from '../../../common/src/index.ts';
import { toPhosError, type PhosError } from '../../../proto/src/index.ts';

export interface Step<C> {
  name: string;
  run(ctx: C): Promise<void>;
  /** Puts back what run changed; only called when run completed. */
  undo?(ctx: C): Promise<void>;
}

export interface StepReport { name: string; ms: number; outcome: 'done' | 'undone' | 'failed' }

export interface RunStepsOptions<C> {
  log: Logger;
  onStep?: (r: StepReport) => void;
  /** Called once at the end, with the first error or undefined; runs even when undo failed. */
  finish?: (ctx: C, err: PhosError | undefined) => Promise<void>;
}

export async function runSteps<C>(procedure: string, steps: Step<C>[], ctx: C, o: RunStepsOptions<C>): Promise<void> {
  const done: Step<C>[] = [];
  let failure: PhosError | undefined;
  for (const step of steps) {
    const t0 = performance.now();
    try {
      await step.run(ctx);
    } catch (err) {
      const ms = performance.now() - t0;
      failure = toPhosError(err);
      o.log.warn({ procedure, step: step.name, ms, err: failure }, 'step failed');
      o.onStep?.({ name: step.name, ms, outcome: 'failed' });
      break;
    }
    const ms = performance.now() - t0;
    o.log.info({ procedure, step: step.name, ms: Math.round(ms * 10) / 10 }, 'step done');
    o.onStep?.({ name: step.name, ms, outcome: 'done' });
    done.push(step);
  }
  if (failure) {
    const rollback: { step: string; code: string; message: string }[] = [];
    for (const step of done.reverse()) {
      if (!step.undo) continue;
      const t0 = performance.now();
      try {
        await step.undo(ctx);
        o.onStep?.({ name: step.name, ms: performance.now() - t0, outcome: 'undone' });
        o.log.info({ procedure, step: step.name, ms: performance.now() - t0 }, 'step undone');
      } catch (err) {
        const e = toPhosError(err);
        rollback.push({ step: step.name, code: e.code, message: e.message });
        o.log.error({ procedure, step: step.name, err: e }, 'undo failed');
      }
    }
    if (rollback.length) failure.details.rollback = rollback;
  }
  try {
    await o.finish?.(ctx, failure);
  } catch (err) {
    o.log.error({ procedure, err: toPhosError(err) }, 'finish failed');
    if (!failure) failure = toPhosError(err);
  }
  if (failure) throw failure;
}
