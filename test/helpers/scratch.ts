// What a test makes and must not leave behind: temporary folders and the processes it started (or CRIU
// restored). Call scratch() once at a file's top level; everything tracked goes after each test.
import { afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function scratch(): { dir: (prefix: string) => string; pid: (pid: number) => number } {
  const dirs: string[] = [];
  const pids: number[] = [];
  afterEach(() => {
    for (const p of pids.splice(0)) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  return {
    dir: (prefix) => { const d = mkdtempSync(join(tmpdir(), prefix)); dirs.push(d); return d; },
    pid: (pid) => { pids.push(pid); return pid; },
  };
}
