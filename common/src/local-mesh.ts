// A phos mesh on one machine, as separate hosts: one network namespace per node (common/src/netns.ts),
// nats-server and the coordinator in the first, a node agent in each. Like separate machines, every agent
// sees its own copy of `runDir` (a bind mount in the agent's private mount namespace — `ip netns exec`
// gives each command one) holding the libphos socket at the same path, so a migrated app reconnects to
// the agent of the host it landed on. Used by `phos demo` and the multi-host tests; needs root.
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeHosts, type Host, type Hosts } from './netns.ts';
import { PhosError } from '../../proto/src/index.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSX = join(ROOT, 'node_modules/tsx/dist/esm/index.mjs');
const NATS_PORT = 4222;
/** Pids per node's range; node i gets pidBase + i * PIDS_PER_NODE onwards. */
const PIDS_PER_NODE = 500;

export interface LocalMeshOptions {
  /** Node names, one host each. */
  nodes: string[];
  /** Work directory (node state, NATS store); the caller removes it. */
  dir: string;
  /** cudasim's directory, or null for the NVIDIA driver. */
  simDir: string | null;
  /** First pid of the first node's range. */
  pidBase: number;
  /** Where each agent's libphos socket lives (one private copy per host). */
  runDir: string;
  /** Environment of the services (their log level is always info: it is kept in memory, see log()). */
  env?: NodeJS.ProcessEnv;
}

export interface LocalNode { name: string; host: Host; control: string; stateDir: string; proc: ChildProcess | null; log: () => string }

export interface LocalMesh {
  hosts: Hosts;
  natsUrl: string;
  nodes: LocalNode[];
  /** Runs bin/phos inside host 0 (it reaches NATS); PHOS_CONTROL_SOCK names `node`'s agent when given. */
  phos(args: string[], node?: LocalNode, timeoutMs?: number, onLine?: (line: string) => void): Promise<{ code: number; stdout: string; stderr: string }>;
  startAgent(n: LocalNode): Promise<void>;
  /** Stops nats-server and starts it again on the same address and JetStream store (KV state survives). */
  restartNats(): Promise<void>;
  stopAgent(n: LocalNode, signal?: NodeJS.Signals): Promise<void>;
  coordinatorLog(): string;
  /** Ends the apps the agents started, every service, and the namespaces. */
  stop(): Promise<void>;
}

function tail(proc: ChildProcess): () => string {
  let buf = '';
  const add = (d: Buffer) => { buf = (buf + d.toString()).slice(-300_000); };
  proc.stdout?.on('data', add);
  proc.stderr?.on('data', add);
  return () => buf;
}

async function until(what: string, pred: () => boolean, ms: number, detail: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new PhosError('TIMEOUT', `${what} did not happen within ${ms / 1000} s:\n${detail().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function exitOf(p: ChildProcess): Promise<void> {
  return p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.once('exit', () => r()));
}

/** Apps the agents started keep running without their agent: end those of this mesh (found by their socket). */
function killApps(o: LocalMeshOptions): void {
  const marker = `PHOS_AGENT_SOCK=${join(o.runDir, 'agent.sock')}`;
  for (let pid = o.pidBase; pid < o.pidBase + o.nodes.length * PIDS_PER_NODE; pid++) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(marker)) process.kill(pid, 'SIGKILL');
    } catch { /* no such process */ }
  }
}

function agentConfig(o: LocalMeshOptions, n: LocalNode, i: number, natsUrl: string): string {
  const first = o.pidBase + i * PIDS_PER_NODE;
  return [
    `socket: "${join(o.runDir, 'agent.sock')}"`, `controlSocket: ${n.control}`, `stateDir: ${n.stateDir}`, `node: ${n.name}`,
    `nats: ${natsUrl}`, `dataAddr: ${n.host.addr}`, `pidRange: "${first}-${first + PIDS_PER_NODE - 1}"`, 'image:', '  fsync: false',
    ...(o.simDir ? [`libcuda: ${join(o.simDir, 'libcuda.so.1')}`, 'env:', `  LD_LIBRARY_PATH: "${o.simDir}"`] : []),
  ].join('\n') + '\n';
}

export async function startLocalMesh(o: LocalMeshOptions): Promise<LocalMesh> {
  const hosts = makeHosts(o.nodes.length);
  const procs: ChildProcess[] = [];
  // Readiness is read from the services' info lines ("coordinator started", "joined the mesh").
  const env = { ...process.env, ...o.env, PHOS_LOG_LEVEL: 'info' };
  const h0 = hosts.hosts[0]!;
  const natsUrl = `nats://${h0.addr}:${NATS_PORT}`;
  const node = (cmdLine: string) => [process.execPath, '--import', TSX, ...cmdLine.split(' ')];
  const stopAll = async () => {
    killApps(o);
    for (const p of [...procs].reverse()) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
    await Promise.race([Promise.all(procs.map(exitOf)), new Promise((r) => setTimeout(r, 5000))]);
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    hosts.destroy();
  };
  try {
    mkdirSync(o.runDir, { recursive: true });
    mkdirSync(join(o.dir, 'nats'), { recursive: true });
    let nats: ChildProcess;
    const startNats = async () => {
      nats = hosts.spawn(h0, 'nats-server', ['-js', '-a', h0.addr, '-p', String(NATS_PORT), '-sd', join(o.dir, 'nats')], { stdio: ['ignore', 'pipe', 'pipe'] });
      procs.push(nats);
      const natsLog = tail(nats);
      await until('nats-server start', () => /Server is ready/.test(natsLog()), 15_000, natsLog);
    };
    await startNats();
    const [cmd, ...args] = node(`${join(ROOT, 'services/coordinator/src/main.ts')} --nats ${natsUrl}`);
    const coord = hosts.spawn(h0, cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    procs.push(coord);
    const coordLog = tail(coord);
    await until('coordinator start', () => /coordinator started/.test(coordLog()), 60_000, coordLog);
    const nodes: LocalNode[] = o.nodes.map((name, i) => {
      const nd = join(o.dir, name);
      mkdirSync(join(nd, 'run'), { recursive: true });
      const n: LocalNode = { name, host: hosts.hosts[i]!, control: join(nd, 'control.sock'), stateDir: join(nd, 'state'), proc: null, log: () => '' };
      writeFileSync(join(nd, 'agent.yaml'), agentConfig(o, n, i, natsUrl));
      return n;
    });
    const startAgent = async (n: LocalNode) => {
      rmSync(n.control, { force: true });
      const nd = join(o.dir, n.name);
      // The agent itself (not `phos agent`, whose child would outlive a SIGKILL of the CLI).
      const script = `mount --bind '${join(nd, 'run')}' '${o.runDir}' && exec ${node(`${join(ROOT, 'services/node-agent/src/main.ts')} --config ${join(nd, 'agent.yaml')}`).map((a) => `'${a}'`).join(' ')}`;
      n.proc = hosts.spawn(n.host, 'sh', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'], env });
      procs.push(n.proc);
      n.log = tail(n.proc);
      await until(`agent ${n.name} joining the mesh`, () => /joined the mesh/.test(n.log()) || n.proc!.exitCode !== null, 60_000, n.log);
      if (n.proc.exitCode !== null) throw new PhosError('AGENT_UNAVAILABLE', `agent ${n.name} exited: ${n.log().slice(-1000)}`);
    };
    for (const n of nodes) await startAgent(n);
    return {
      hosts, natsUrl, nodes, startAgent,
      async restartNats() {
        nats.kill('SIGTERM');
        await exitOf(nats);
        await startNats();
      },
      phos: (cmdArgs, n, timeoutMs = 300_000, onLine) => new Promise((resolve) => {
        const p = hosts.spawn(h0, join(ROOT, 'bin', 'phos'), cmdArgs, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...env, ...(n ? { PHOS_CONTROL_SOCK: n.control } : {}) } });
        let stdout = '', stderr = '', partial = '';
        p.stdout!.on('data', (d: Buffer) => {
          stdout += d.toString();
          partial += d.toString();
          for (let nl = partial.indexOf('\n'); nl >= 0; nl = partial.indexOf('\n')) { onLine?.(partial.slice(0, nl)); partial = partial.slice(nl + 1); }
        });
        p.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
        const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
        p.once('exit', (code) => { clearTimeout(t); resolve({ code: code ?? 137, stdout, stderr }); });
      }),
      async stopAgent(n, signal = 'SIGTERM') {
        if (!n.proc) return;
        n.proc.kill(signal);
        await exitOf(n.proc);
      },
      coordinatorLog: coordLog,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
