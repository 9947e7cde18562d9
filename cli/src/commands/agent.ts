// `phos agent`: runs the node agent in the foreground (its own process: the CLI never imports services;
// this only execs services/node-agent/src/main.ts with the same Node loader) and passes its exit status on.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dieWithParent } from '../children.ts';

export const AGENT_HELP = `usage: phos agent [--config FILE] [--socket PATH] [--control-socket PATH] [--state-dir DIR]
                  [--node NAME] [--pid-range MIN-MAX] [--libcuda PATH]

Runs the node agent in the foreground until SIGINT/SIGTERM; logs are JSON lines on stderr.
  --config FILE          YAML config (keys: socket, controlSocket, stateDir, node, pidRange, pidHoldSeconds, libphos, libcuda,
                         criu, image.fsync, image.prefill, image.stageDir,
                         image.trimZeroPages, image.shedDriverCopy, va.base, va.size, env); $PHOS_AGENT_CONFIG when not given
  --socket PATH          libphos's socket (default /run/phos/agent.sock)
  --control-socket PATH  the CLI's socket (default /run/phos/control.sock)
  --state-dir DIR        logs of managed processes (default /var/lib/phos)
  --node NAME            node name (default: the host name)
  --pid-range MIN-MAX    pids handed to managed processes (default 20000-29999)
  --libcuda PATH         driver library for the checkpoint calls (e.g. cudasim's libcuda.so.1)
Flags override the config file.

Exit status: 0 after a clean stop; 2 bad arguments or config; 3 config file not found.
`;

const MAIN = fileURLToPath(new URL('../../../services/node-agent/src/main.ts', import.meta.url));

export function agent(argv: string[]): Promise<number> {
  const [cmd, ...pre] = [...dieWithParent(), process.execPath];
  const child = spawn(cmd!, [...pre, ...process.execArgv, MAIN, ...argv], { stdio: 'inherit' });
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 + 15 : 70))));
}
