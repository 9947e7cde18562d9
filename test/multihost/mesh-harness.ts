// A two-node phos mesh on one machine for migration tests: two network-namespace hosts, nats-server and
// the coordinator in host 0, a node agent (cudasim) in each, the CLI run inside host 0's namespace. Like
// separate machines, each agent sees its own /run/phos-mesh (a bind mount in the agent's private mount
// namespace) holding the libphos socket at the same path, so a migrated app reconnects to the agent of
// the host it landed on. stop() kills every process and deletes the namespaces and the temp tree.
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeHosts, type Host, type Hosts } from '../helpers/hosts.ts';
import { CUDASIM_DIR, ROOT, cudasimEnv } from '../helpers/paths.ts';

export interface MeshNode { name: string; host: Host; control: string; stateDir: string; proc: ChildProcess; log: () => string }

export interface Mesh {
  hosts: Hosts;
  natsUrl: string;
  nodes: MeshNode[];
  dir: string;
  /** Runs bin/phos inside host 0 (reaches NATS); control-socket verbs go to `node` when named. */
  phos(args: string[], node?: MeshNode, timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Starts a node's agent again after stopAgent. */
  startAgent(n: MeshNode): Promise<void>;
  stopAgent(n: MeshNode, signal?: NodeJS.Signals): Promise<void>;
  coordinatorLog(): string;
  stop(): Promise<void>;
}

const TSX = join(ROOT, 'node_modules/tsx/dist/esm/index.mjs');

function tail(proc: ChildProcess): () => string {
  let buf = '';
  const add = (d: Buffer) => { buf = (buf + d.toString()).slice(-300_000); };
  proc.stdout?.on('data', add);
  proc.stderr?.on('data', add);
  return () => buf;
}

async function until(what: string, pred: () => boolean, ms: number, detail: () => string = () => ''): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`${what} did not happen within ${ms} ms\n${detail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function exitOf(p: ChildProcess): Promise<void> {
  return p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.once('exit', () => r()));
}

/** Apps the agents started (pids of the two ranges) do not end with their agent: end them. */
function killWorkloads(): void {
  for (let pid = 26000; pid < 27000; pid++) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('/workloads/')) process.kill(pid, 'SIGKILL');
    } catch { /* no such process */ }
  }
}

export async function startMesh(names: [string, string] = ['node-a', 'node-b']): Promise<Mesh> {
  const hosts = makeHosts(2);
  const dir = mkdtempSync(join(tmpdir(), 'phos-mesh-'));
  const procs: ChildProcess[] = [];
  const h0 = hosts.hosts[0]!;
  const port = 4222;
  const natsUrl = `nats://${h0.addr}:${port}`;
  const runDir = '/run/phos-mesh';
  mkdirSync(runDir, { recursive: true });
  const sock = join(runDir, 'agent.sock');
  const env = cudasimEnv({ PHOS_LOG_LEVEL: 'info' });
  try {
    mkdirSync(join(dir, 'nats'));
    const nats = hosts.spawn(h0, 'nats-server', ['-js', '-a', h0.addr, '-p', String(port), '-sd', join(dir, 'nats')], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(nats);
    const natsLog = tail(nats);
    await until('nats-server listening', () => /Server is ready/.test(natsLog()), 15_000, natsLog);
    const coord = hosts.spawn(h0, process.execPath, ['--import', TSX, join(ROOT, 'services/coordinator/src/main.ts'), '--nats', natsUrl], { stdio: ['ignore', 'pipe', 'pipe'], env });
    procs.push(coord);
    const coordLog = tail(coord);
    await until('coordinator started', () => /coordinator started/.test(coordLog()), 30_000, coordLog);
    const nodes: MeshNode[] = hosts.hosts.map((host, i) => {
      const name = names[i]!;
      const nd = join(dir, name);
      mkdirSync(nd);
      const cfg = [
        `socket: "${sock}"`, `controlSocket: ${join(nd, 'control.sock')}`, `stateDir: ${join(nd, 'state')}`, `node: ${name}`,
        `nats: ${natsUrl}`, `dataAddr: ${host.addr}`, `libcuda: ${join(CUDASIM_DIR, 'libcuda.so.1')}`, `pidRange: ${26000 + i * 500}-${26000 + i * 500 + 499}`,
        'env:', `  LD_LIBRARY_PATH: "${CUDASIM_DIR}"`, 'image:', '  fsync: false',
      ].join('\n');
      writeFileSync(join(nd, 'agent.yaml'), cfg + '\n');
      return { name, host, control: join(nd, 'control.sock'), stateDir: join(nd, 'state'), proc: null as unknown as ChildProcess, log: () => '' };
    });
    const startAgent = async (n: MeshNode) => {
      rmSync(n.control, { force: true });
      const own = join(dir, n.name, 'run');
      mkdirSync(own, { recursive: true });
      // `ip netns exec` gives the command a private mount namespace: the bind is seen by this agent and the apps it starts only.
      // The agent itself, not `phos agent` (which runs it as a child that would outlive a SIGKILL of the CLI).
      const script = `mount --bind '${own}' '${runDir}' && exec '${process.execPath}' --import '${TSX}' '${join(ROOT, 'services/node-agent/src/main.ts')}' --config '${join(dir, n.name, 'agent.yaml')}'`;
      n.proc = hosts.spawn(n.host, 'sh', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'], env });
      procs.push(n.proc);
      n.log = tail(n.proc);
      await until(`agent ${n.name} joined the mesh`, () => /joined the mesh/.test(n.log()), 30_000, n.log);
    };
    for (const n of nodes) await startAgent(n);
    const mesh: Mesh = {
      hosts, natsUrl, nodes, dir,
      phos: (args, node, timeoutMs = 120_000) => new Promise((resolve) => {
        const p = hosts.spawn(h0, join(ROOT, 'bin', 'phos'), args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...env, ...(node ? { PHOS_CONTROL_SOCK: node.control } : {}) } });
        let stdout = '', stderr = '';
        p.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
        p.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
        const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
        p.once('exit', (code) => { clearTimeout(t); resolve({ code: code ?? 137, stdout, stderr }); });
      }),
      startAgent,
      async stopAgent(n, signal = 'SIGTERM') {
        n.proc.kill(signal);
        await exitOf(n.proc);
      },
      coordinatorLog: coordLog,
      async stop() {
        killWorkloads();
        for (const p of procs.reverse()) if (p.exitCode === null && p.signalCode === null) { p.kill('SIGTERM'); }
        await Promise.race([Promise.all(procs.map(exitOf)), new Promise((r) => setTimeout(r, 5000))]);
        for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
        hosts.destroy();
        rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
      },
    };
    return mesh;
  } catch (err) {
    for (const p of procs) p.kill('SIGKILL');
    hosts.destroy();
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    throw err;
  }
}
