// The native rooms' ctest checks again, built with AddressSanitizer + UndefinedBehaviorSanitizer
// (cmake -DPHOS_SANITIZE=ON into build/native-asan). Building that tree is part of the test, since CI
// starts from a clean clone; an incremental rebuild takes seconds.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { ROOT } from '../helpers/paths.ts';
import { runCommand } from '../helpers/run.ts';

const BUILD = join(ROOT, 'build', 'native-asan');
const ROOMS = ['cudasim', 'workloads', 'hijack'] as const;

const run = (cmd: string, args: string[], timeoutMs: number) => runCommand(cmd, args, { timeoutMs });

describe('native checks under ASan/UBSan', () => {
  it('the sanitizer build configures and builds', async () => {
    const cfg = await run('cmake', ['-S', join(ROOT, 'native'), '-B', BUILD, '-DPHOS_SANITIZE=ON', '-DCMAKE_BUILD_TYPE=Debug'], 120_000);
    expect(cfg.ok, cfg.out.slice(-4000)).toBe(true);
    const build = await run('cmake', ['--build', BUILD, '-j', '2'], 900_000);
    expect(build.ok, build.out.split('\n').filter((l) => /error|Error/.test(l)).slice(0, 30).join('\n')).toBe(true);
  }, 960_000);

  it.each(ROOMS)('%s: every ctest check passes with sanitizers', async (room) => {
    const r = await run('ctest', ['--test-dir', join(BUILD, room), '--output-on-failure', '--timeout', '300', '-j', '2'], 900_000);
    expect(r.out).toMatch(/tests passed/);
    expect(r.ok, r.out.slice(-6000)).toBe(true);
  }, 900_000);
});
