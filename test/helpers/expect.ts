// Small assertion helpers shared by integration tests.
import { expect } from 'vitest';
import { PhosError } from '../../proto/src/index.ts';

/** The PhosError a promise rejects with; fails the test when it resolves or rejects with anything else. */
export async function rejection(p: Promise<unknown>): Promise<PhosError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PhosError);
    return e as PhosError;
  }
  throw new Error('expected a rejection');
}
