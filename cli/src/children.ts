// Child processes the CLI starts (phos up's services, phos agent's agent) must not outlive it, even when
// the CLI is SIGKILLed and cannot stop them itself.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * A command prefix that makes the kernel send the child SIGTERM when the CLI dies (PR_SET_PDEATHSIG;
 * setpriv sets it, then execs the command, so the child keeps its pid). Empty where setpriv is
 * missing or too old to know --pdeathsig.
 */
export function dieWithParent(): string[] {
  for (const setpriv of ['/usr/bin/setpriv', '/bin/setpriv']) {
    if (!existsSync(setpriv)) continue;
    if (spawnSync(setpriv, ['--pdeathsig', 'TERM', '--', 'true'], { stdio: 'ignore', timeout: 5000 }).status === 0) return [setpriv, '--pdeathsig', 'TERM', '--'];
  }
  return [];
}
