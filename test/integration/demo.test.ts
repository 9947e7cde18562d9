// The README's first command ends in `phos demo`: one node, counter under phos, pre-dump, dump, restore,
// and a bit-exact check. It must keep working end to end.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { ROOT } from '../helpers/paths.ts';
import { runCommand } from '../helpers/run.ts';

describe('phos demo', () => {
  it('runs the embedded default end to end and reports a bit-exact continuation', async () => {
    const r = await runCommand(join(ROOT, 'bin', 'phos'), ['demo', '--mib', '32'], { timeoutMs: 170_000 });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/pre-dump \((keeper|safe) path\): the app was paused [\d.]+ s/);
    expect(r.out).toMatch(/restore: running again after [\d.]+ s, continuing from step (\d+)/);
    expect(r.out).toMatch(/ok: 400 steps, every one verified, checksum [0-9a-f]{16} equals an uninterrupted run/);
  }, 180_000);
});
