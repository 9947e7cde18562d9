// `phos up`: the embedded mesh on one machine — nats-server (JetStream), a coordinator and a node agent
// that joins it — in the foreground until Ctrl-C. Each runs as its own process (the CLI never imports
// services); their logs go to files under the state directory. The children stay in phos up's process
// group and, where util-linux setpriv is installed, get a parent-death signal (SIGTERM), so they stop
// with phos up even when it is SIGKILLed and cannot stop them itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PROTO_VERSION, PhosError } from '../../../proto/src/index.ts';
import { CoordClient } from '../coord-client.ts';
import { simulatedDriverDir } from '../driver.ts';
import { dieWithParent } from '../children.ts';

export const UP_HELP = `usage: phos up [--state-dir DIR] [--nats-port N] [--node NAME] [--nats URL]

Starts the embedded default mesh on this machine and keeps it up until Ctrl-C:
  nats-server (JetStream, 127.0.0.1:--nats-port, default 4222; skipped when --nats names a server),
  the coordinator, and a node agent that registers with it (the simulated GPU when no NVIDIA driver loads).
Logs: DIR/logs/{nats,coordinator,agent}.log. DIR defaults to /var/lib/phos/mesh.
Then, in another shell: PHOS_CONTROL_SOCK=DIR/control.sock phos run -- CMD; phos nodes; phos migrate ...
`;

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/** Generous: on a busy small machine a node service takes seconds to load. */
const START_S = 60;

async function waitFor(what: string, pred: () => boolean | Promise<boolean>, child: ChildProcess, log: string): Promise<void> {
  const end = Date.now() + START_S * 1000;
  while (!(await pred())) {
    if (child.exitCode !== null) throw new PhosError('INTERNAL', `${what} exited (${child.exitCode}); see ${log}`);
    if (Date.now() > end) throw new PhosError('TIMEOUT', `${what} did not come up within ${START_S} s; see ${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = tcpConnect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => { sock.destroy(); resolve(ok); };
    sock.setTimeout(2000, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** Whether a coordinator answers on `url` (it serves every verb once it answers one). */
async function coordinatorAnswers(url: string): Promise<boolean> {
  let c: CoordClient;
  try { c = await CoordClient.open(url); } catch { return false; }
  try {
    await c.request('nodes', 'list-request', { v: PROTO_VERSION }, 5000);
    return true;
  } catch {
    return false;
  } finally {
    await c.close().catch(() => undefined);
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
  const prefix = dieWithParent();
  const start = (name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) => {
    const fd = openSync(join(logs, `${name}.log`), 'a');
    const [exe, ...rest] = [...prefix, cmd, ...args];
    const proc = spawn(exe!, rest, { stdio: ['ignore', fd, fd], env });
    closeSync(fd);
    children.push({ name, proc });
    return proc;
  };
  const stopAll = async () => {
    for (const c of children.reverse()) {
      if (c.proc.exitCode === null && c.proc.signalCode === null) {
        const exited = new Promise((r) => c.proc.once('exit', r));
        c.proc.kill('SIGTERM');
        const late = setTimeout(() => c.proc.kill('SIGKILL'), 15_000); // wedged: do not hang phos up
        await exited;
        clearTimeout(late);
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
      await waitFor('nats-server', () => listening(port), nats, join(logs, 'nats.log'));
    }
    const loader = [...process.execArgv];
    const coord = start('coordinator', process.execPath, [...loader, join(ROOT, 'services/coordinator/src/main.ts'), '--nats', url]);
    // The agent registers once, when it joins: start it only when the coordinator can take that.
    await waitFor('the coordinator', () => coordinatorAnswers(url), coord, join(logs, 'coordinator.log'));
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
