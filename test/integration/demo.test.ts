// The README's first command ends in `phos demo`: two hosts (network namespaces), counter under phos on
// the first, live-migrated to the second, bit-exact check; `--local` is the one-node tour (pre-dump,
// dump, restore). Both must keep working end to end.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { hostsUnavailable } from '../helpers/hosts.ts';
import { ROOT } from '../helpers/paths.ts';
import { runCommand } from '../helpers/run.ts';

const phos = join(ROOT, 'bin', 'phos');

describe('phos demo', () => {
  it.skipIf(hostsUnavailable() !== null)('migrates counter between two hosts and reports the downtime and a bit-exact continuation', async () => {
    const r = await runCommand(phos, ['demo', '--mib', '32'], { timeoutMs: 170_000 });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/mesh up: NATS nats:\/\/[\d.]+:4222, coordinator, agents demo-a \([\d.]+\) and demo-b/);
    expect(r.out).toMatch(/pre-copy\s+sent/);
    expect(r.out).toMatch(/migrated: pid \d+ runs on demo-b \(step \d+ so far\); downtime \d+ ms/);
    expect(r.out).toMatch(/ok: 400 steps, every one verified, checksum [0-9a-f]{16} equals an uninterrupted run/);
  }, 180_000);

  it('--local: checkpoints and restores on one node with a bit-exact continuation', async () => {
    const r = await runCommand(phos, ['demo', '--local', '--mib', '32'], { timeoutMs: 170_000 });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/pre-dump \((keeper|safe) path\): the app was paused [\d.]+ s/);
    expect(r.out).toMatch(/restore: running again after [\d.]+ s, continuing from step (\d+)/);
    expect(r.out).toMatch(/ok: 400 steps, every one verified, checksum [0-9a-f]{16} equals an uninterrupted run/);
  }, 180_000);
});
