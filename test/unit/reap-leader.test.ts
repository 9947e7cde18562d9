// The agent reaps what CRIU restored (it is their subreaper) and records the exit status. A process whose
// main thread ended before its other threads shows its leader as a zombie that waitpid cannot reap yet;
// the registry once took that for "gone, status unknown" (a CI run saw exitCode null for a clean exit).
// Here such a process is made the registry's the way CRIU's are: a child whose parent exits, under a pid
// the registry adopted beforehand (clone3 with set_tid).
import { afterEach, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '../../common/src/index.ts';
import { compileAgentOptions, ProcessRegistry } from '../../services/node-agent/src/index.ts';
import { runCommand } from '../helpers/run.ts';
import { scratch } from '../helpers/scratch.ts';

// argv[1]: the pid to create. The child's main thread exits at once; a second thread exits the process
// with status 7 after 1.5 s, so the leader stays an unreapable zombie that long.
const HELPER = `
#define _GNU_SOURCE
#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
static void *later(void *arg) { (void)arg; usleep(1500 * 1000); exit(7); }
int main(int argc, char **argv) {
  pid_t want = atoi(argv[1]);
  struct clone_args a;
  memset(&a, 0, sizeof a);
  a.exit_signal = SIGCHLD;
  a.set_tid = (uint64_t)(uintptr_t)&want;
  a.set_tid_size = 1;
  long r = syscall(SYS_clone3, &a, sizeof a);
  if (r < 0) { perror("clone3"); return 1; }
  if (r > 0) return 0;
  pthread_t t;
  pthread_create(&t, NULL, later, NULL);
  pthread_exit(NULL);
}
`;

const PID = 29950;
const tracked = scratch();
let registry: ProcessRegistry | null = null;
afterEach(() => { registry?.stop(); registry = null; });

it.runIf(process.getuid?.() === 0)('a restored process whose main thread ends first is reaped with its exit status, not reported unknown', async () => {
  const dir = tracked.dir('phos-reap-');
  writeFileSync(join(dir, 'leader.c'), HELPER);
  const cc = await runCommand('cc', ['-O1', '-pthread', '-o', join(dir, 'leader'), join(dir, 'leader.c')], { timeoutMs: 60_000 });
  expect(cc.ok, cc.out).toBe(true);
  expect(existsSync(`/proc/${PID}`), `pid ${PID} is taken on this machine`).toBe(false);

  const o = compileAgentOptions({ stateDir: dir, pidRange: '29940-29959' });
  registry = new ProcessRegistry(o, createLogger({ service: 'test', level: 'silent' }));
  registry.becomeReaper();
  const rec = registry.adoptRestoring({ pid: PID, job: 'leader', argv: ['leader'], logPath: join(dir, 'app.log'), restoredFrom: dir });
  rec.machine.transition('thawing', 'test: restored');
  rec.machine.transition('running', 'test: thawed');

  const parent = spawn(join(dir, 'leader'), [String(PID)], { stdio: 'ignore' });
  expect(await new Promise((res) => parent.once('exit', res))).toBe(0);
  registry.watch(PID);
  for (const end = Date.now() + 300; Date.now() < end;) await new Promise((res) => setTimeout(res, 20));
  expect(rec.machine.state).toBe('running'); // the leader is a zombie by now; the process is not over

  for (const end = Date.now() + 5000; rec.machine.state !== 'exited' && Date.now() < end;) await new Promise((res) => setTimeout(res, 50));
  expect(rec.machine.state).toBe('exited');
  expect(rec.exitCode).toBe(7);
  expect(existsSync(`/proc/${PID}`)).toBe(false);
});
