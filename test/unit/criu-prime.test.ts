// The agent has criu write its kernel-probe cache at start when there is none, so the first dump or
// restore after a boot does not probe the kernel inside the app's stall. A stand-in criu records how it
// was called and writes the cache file the way `criu check` does.
import { expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { primeCriuCache } from '../../services/node-agent/src/index.ts';
import { scratch } from '../helpers/scratch.ts';

const tracked = scratch();

it('runs criu check when the kernel-probe cache is missing, and not again once it is there', async () => {
  const dir = tracked.dir('phos-prime-');
  const cache = join(dir, 'criu.kdat');
  const calls = join(dir, 'calls');
  const fake = join(dir, 'criu');
  writeFileSync(fake, `#!/bin/sh\necho "$*" >>${calls}\n[ "$1" = check ] && echo kdat >${cache}\nexit 0\n`, { mode: 0o755 });

  expect(await primeCriuCache({ bin: fake }, cache)).toBe(true);
  expect(existsSync(cache)).toBe(true);
  expect(readFileSync(calls, 'utf8').trim().split('\n')).toEqual(['check']);

  expect(await primeCriuCache({ bin: fake }, cache)).toBe(false);
  expect(readFileSync(calls, 'utf8').trim().split('\n')).toEqual(['check']);
});
