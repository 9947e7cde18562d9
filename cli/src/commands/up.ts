// `phos up`: the embedded mesh on one machine — nats-server (JetStream), a coordinator and a node agent
// that joins it — in the foreground until Ctrl-C. Each runs as its own process (the CLI never imports
// services); their logs go to files under the state directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PhosError } from '../../../proto/src/index.ts';
import { simulatedDriverDir } from '../driver.ts';

export const UP_HELP = `usage: phos up [--state-dir DIR] [--nats-port N] [--node NAME] [--nats URL]

Starts the embedded default mesh on this machine and keeps it up until Ctrl-C:
  nats-server (JetStream, 127.0.0.1:--nats-port, default 4222; skipped when --nats names a server),
  the coordinator, and a node agent that registers with it (the simulated GPU when no NVIDIA driver loads).
Logs: DIR/logs/{nats,coordinator,agent}.log. DIR defaults to /var/lib/phos/mesh.
Then, in another shell: PHOS_CONTROL_SOCK=DIR/control.sock phos run -- CMD; phos nodes; phos migrate ...
`;

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

async function waitFor(what: string, pred: () => boolean, child: ChildProcess, log: string): Promise<void> {
  const end = Date.now() + 30_000;
  while (!pred()) {
    if (child.exitCode !== null) throw new PhosError('INTERNAL', `${what} exited (${child.exitCode}); see ${log}`);
    if (Date.now() > end) throw new PhosError('TIMEOUT', `${what} did not come up within 30 s; see ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function up(argv: string[]): Promise<number> {
  let values: { 'state-dir'?: string; 'nats-port'?: string; node?: string; nats?: string };
  try {
    values = parseArgs({ args: argv, strict: true, options: { 'state-dir': { type: 'string' }, 'nats-port': { type: 'string' }, node: { type: 'string' }, nats: { type: 'string' }, json: { type: 'boolean' } } }).values;
  } catch (err) {
    throw new PhosError('BAD_ARGS', (err as Error).message, { remedy: 'phos up --help' });
  }
  const dir = values['state-dir'] ?? '/var/lib/phos/mesh';
  const port = Number(values['nats-port'] ?? 4222);
  if (!Number.isSafeInteger(port) || port <= 0 || port > 65535) throw new PhosError('BAD_ARGS', `--nats-port must be a TCP port, got ${values['nats-port']}`);
  const node = values.node ?? (hostname().toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+/, '') || 'node');
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const children: { name: string; proc: ChildProcess }[] = [];
  const start = (name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) => {
    const fd = openSync(join(logs, `${name}.log`), 'a');
    const proc = spawn(cmd, args, { stdio: ['ignore', fd, fd], env });
    children.push({ name, proc });
    return proc;
  };
  const stopAll = async () => {
    for (const c of children.reverse()) {
      if (c.proc.exitCode === null && c.proc.signalCode === null) {
        c.proc.kill('SIGTERM');
        await new Promise((r) => c.proc.once('exit', r));
      }
    }
  };
  try {
    let url = values.nats;
    if (!url) {
      url = `nats://127.0.0.1:${port}`;
      mkdirSync(join(dir, 'nats'), { recursive: true });
      const nats = start('nats', 'nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', join(dir, 'nats')]);
      await new Promise((r) => setTimeout(r, 300));
      if (nats.exitCode !== null) throw new PhosError('NATS_UNAVAILABLE', `nats-server exited; see ${join(logs, 'nats.log')}`, { remedy: 'is the port taken? try --nats-port, or install it: bash deploy/install.sh' });
    }
    const loader = [...process.execArgv];
    const coord = start('coordinator', process.execPath, [...loader, join(ROOT, 'services/coordinator/src/main.ts'), '--nats', url]);
    const sim = simulatedDriverDir();
    const control = join(dir, 'control.sock');
    const cfg = [`socket: ${join(dir, 'agent.sock')}`, `controlSocket: ${control}`, `stateDir: ${join(dir, 'state')}`, `node: ${node}`, `nats: ${url}`,
      ...(sim ? ['env:', `  LD_LIBRARY_PATH: "${sim}"`, `libcuda: ${join(sim, 'libcuda.so.1')}`] : [])].join('\n');
    writeFileSync(join(dir, 'agent.yaml'), cfg + '\n');
    const agent = start('agent', process.execPath, [...loader, join(ROOT, 'services/node-agent/src/main.ts'), '--config', join(dir, 'agent.yaml')]);
    await waitFor('the agent', () => existsSync(control), agent, join(logs, 'agent.log'));
    if (coord.exitCode !== null) throw new PhosError('INTERNAL', `the coordinator exited; see ${join(logs, 'coordinator.log')}`);
    process.stdout.write(`phos mesh up: NATS ${url}, coordinator, agent ${node} on ${sim ? 'cudasim' : 'the NVIDIA driver'}\n` +
      `  control socket ${control}; logs in ${logs}\n  try: PHOS_CONTROL_SOCK=${control} phos run -- CMD   |   phos nodes --nats ${url}\n  Ctrl-C stops everything.\n`);
    const stopped = new Promise<string>((resolve) => {
      process.once('SIGINT', () => resolve('interrupted'));
      process.once('SIGTERM', () => resolve('terminated'));
      for (const c of children) c.proc.once('exit', (code) => resolve(`${c.name} exited (${code}); see ${join(logs, `${c.name}.log`)}`));
    });
    const why = await stopped;
    process.stderr.write(`phos up: ${why}; stopping\n`);
    return why === 'interrupted' || why === 'terminated' ? 0 : 70;
  } finally {
    await stopAll();
  }
}
