// The pid a dumped process leaves is held by a placeholder until its restore claims it. The hold waits
// for the dumped process to be reaped first; a restore that comes in that window must win: the
// placeholder is not started at all (else the restore finds its own pid taken, as a GPU bench once did).
import { afterEach, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../common/src/index.ts';
import { compileAgentOptions, ProcessRegistry } from '../../services/node-agent/src/index.ts';

const cmdOf = (pid: number) => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]; } catch { return null; } };
let registry: ProcessRegistry | null = null;
afterEach(() => { registry?.stop(); registry = null; });

it('a restore that comes while the dumped process is still being reaped takes the pid; no placeholder starts', async () => {
  const o = compileAgentOptions({ stateDir: mkdtempSync(join(tmpdir(), 'phos-hold-')), pidRange: '29600-29699' });
  registry = new ProcessRegistry(o, createLogger({ service: 'test', level: 'silent' }));
  const dumped = spawn('sleep', ['30'], { stdio: 'ignore' });
  const pid = dumped.pid!;
  const hold = registry.holdWhenGone(pid);   // waits: the process is still there
  await registry.settled(pid, 50);           // the restore's claim, before the reaping
  dumped.kill('SIGKILL');
  await hold;
  await new Promise((res) => setTimeout(res, 100));
  expect(cmdOf(pid)).not.toBe('phos-pid-hold');

  // Without a restore in the window the pid is held, as before.
  const other = spawn('sleep', ['30'], { stdio: 'ignore' });
  const held = registry.holdWhenGone(other.pid!);
  other.kill('SIGKILL');
  await held;
  for (const end = Date.now() + 3000; cmdOf(other.pid!) !== 'phos-pid-hold' && Date.now() < end;) await new Promise((res) => setTimeout(res, 20));
  expect(cmdOf(other.pid!)).toBe('phos-pid-hold');
  await registry.settled(other.pid!, 2000);
  expect(existsSync(`/proc/${other.pid!}`) && cmdOf(other.pid!) === 'phos-pid-hold').toBe(false);
});
