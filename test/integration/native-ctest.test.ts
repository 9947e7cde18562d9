// The native rooms' own named checks (ctest): cudasim, the workloads on cudasim, libphos. One vitest
// case per room so a failure names the room; the ctest output is the failure message.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { NATIVE_BUILD } from '../helpers/paths.ts';
import { runCommand } from '../helpers/run.ts';

const ROOMS = ['cudasim', 'workloads', 'hijack'] as const;

describe('native checks (ctest)', () => {
  it.each(ROOMS)('%s: every ctest check passes', async (room) => {
    const dir = join(NATIVE_BUILD, room);
    expect(existsSync(join(dir, 'CTestTestfile.cmake')), `${dir} not built; run: bash deploy/install.sh`).toBe(true);
    const r = await runCommand('ctest', ['--test-dir', dir, '--output-on-failure', '--timeout', '120', '-j', '2'], { timeoutMs: 580_000 });
    const out = r.out;
    expect(out).toMatch(/tests passed/); // ctest prints "100% tests passed" or "N% tests passed, M failed"
    expect(r.code, out.slice(-6000)).toBe(0);
    expect(out).not.toMatch(/No tests were found/);
  }, 600_000);
});
