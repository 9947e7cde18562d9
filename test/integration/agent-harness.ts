// Shared by the agent-*.test.ts files: a real node agent process on temp sockets and a temp state dir
// (cudasim as its driver), and the real `phos` CLI pointed at it. stop() ends the agent and every
// process it started, and removes the temp tree.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { CUDASIM_DIR, ROOT, cudasimEnv } from '../helpers/paths.ts';

export interface AgentHandle {
  dir: string;
  controlSocket: string;
  stateDir: string;
  proc: ChildProcess;
  /** Runs bin/phos against this agent. */
  phos(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** phos with --json: the last stdout line parsed. */
  phosJson<T = Record<string, unknown>>(args: string[]): Promise<{ code: number; last: T; lines: Record<string, unknown>[]; stderr: string }>;
  /** Starts argv through the control socket directly (no CLI start-up cost); returns the process record. */
  run(argv: string[], job: string): Promise<{ pid: number; logPath: string }>;
  /** One control request straight over the socket; resolves with the result body (rejects on an error line). */
  call<T = unknown>(verb: string, body: Record<string, unknown>): Promise<T>;
  /** The agent's stderr (its log), last 200 kB. */
  agentLog(): string;
  stop(): Promise<void>;
}

/** One control request straight over the socket (JSON lines, proto/src/control.ts); resolves with the result body. */
function callAgent(socket: string, verb: string, body: Record<string, unknown>): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = connect(socket);
    let buf = '';
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(JSON.stringify({ v: 1, id: 1, verb, ...body }) + '\n'));
    sock.on('error', reject);
    sock.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const e = JSON.parse(buf.slice(0, nl)) as { t: string; body?: unknown; err?: { message: string } };
        buf = buf.slice(nl + 1);
        if (e.t === 'result') { sock.end(); resolve(e.body); }
        if (e.t === 'error') { sock.end(); reject(new Error(e.err?.message)); }
      }
    });
  });
}

/**
 * Test files run in parallel, and a restore needs its pid free: each file has its own range.
 * 21000 demo, 22000 agent-mesh, 23000 agent-checkpoint, 24000 agent-safe-refusal, 24500 agent-many-allocs,
 * 25000 agent-images, 26000 agent-lazy, 27000 agent-rollback, 28000-28999 multihost migrate (two nodes).
 */
export async function startAgent(pidRange: string, extraEnv: Record<string, string> = {}): Promise<AgentHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'phos-agent-'));
  const controlSocket = join(dir, 'control.sock');
  const stateDir = join(dir, 'state');
  const env = cudasimEnv({ PHOS_LOG_LEVEL: 'info' });
  const proc = spawn(join(ROOT, 'bin', 'phos'), [
    'agent', '--socket', join(dir, 'agent.sock'), '--control-socket', controlSocket, '--state-dir', stateDir,
    '--libcuda', join(CUDASIM_DIR, 'libcuda.so.1'), '--pid-range', pidRange, '--node', 'test',
  ], { env: { ...env, ...extraEnv }, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-200_000); });
  const deadline = Date.now() + 20_000;
  // Ready once it answers a ping: the socket file exists from bind(2), a moment before listen(2).
  for (;;) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`agent did not start:\n${log}`);
    if (existsSync(controlSocket) && await callAgent(controlSocket, 'ping', {}).then(() => true, () => false)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const phos = (args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(join(ROOT, 'bin', 'phos'), args, { env: { ...env, PHOS_CONTROL_SOCK: controlSocket }, encoding: 'utf8', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
  return {
    dir, controlSocket, stateDir, proc, phos,
    call: async <T>(verb: string, body: Record<string, unknown>) => await callAgent(controlSocket, verb, body) as T,
    agentLog: () => log,
    async phosJson<T>(args: string[]) {
      const r = await phos([args[0]!, '--json', ...args.slice(1)]);
      const lines = r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      return { code: r.code, last: lines[lines.length - 1] as T, lines, stderr: r.stderr };
    },
    async run(argv: string[], job: string) {
      const vars: Record<string, string> = {};
      for (const [k, v] of Object.entries(env)) if (v !== undefined) vars[k] = v;
      return await callAgent(controlSocket, 'run', { argv, job, env: vars }) as { pid: number; logPath: string };
    },
    async stop() {
      try {
        const { processes } = await callAgent(controlSocket, 'ps', { all: true }) as { processes: { pid: number; state: string }[] };
        for (const p of processes) if (p.state !== 'exited' && p.state !== 'dumped') { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }
      } catch { /* agent already gone */ }
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((res) => { proc.once('exit', res); setTimeout(res, 5000); });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Files directly under an image's gpu/ directory. */
export function gpuFiles(img: string): string[] {
  return readdirSync(join(img, 'gpu'));
}

/**
 * True once pid no longer runs an app: gone from /proc, a zombie waiting to be reaped, or only the agent's
 * placeholder holds it after a dump. Polls for up to `ms`: a dump's reply can come before the killed
 * process is reaped and the placeholder takes its pid.
 */
export async function appGone(pid: number, ms = 10_000): Promise<boolean> {
  const gone = () => {
    try {
      if (/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) return true;
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] === 'phos-pid-hold';
    } catch {
      return true;
    }
  };
  for (const end = Date.now() + ms; !gone(); await new Promise((r) => setTimeout(r, 50))) if (Date.now() > end) return false;
  return true;
}
