// Real NATS for tests: NATS_URL when set, else a testcontainers nats container when a Docker engine
// answers, else a nats-server child process with JetStream on a free port in a temp dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface NatsHandle {
  url: string;
  /** How it was obtained: 'env' | 'container' | 'process'. */
  source: 'env' | 'container' | 'process';
  stop(): Promise<void>;
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once host:port accepts a TCP connection and sends NATS's INFO line. */
export async function waitForNats(host: string, port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = tcpConnect({ host, port });
      sock.setTimeout(500);
      sock.once('data', (d) => { sock.destroy(); resolve(d.toString().startsWith('INFO')); });
      sock.once('error', () => resolve(false));
      sock.once('timeout', () => { sock.destroy(); resolve(false); });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nats-server at ${host}:${port} did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function dockerReachable(): Promise<boolean> {
  if (!process.env.DOCKER_HOST && !existsSync('/var/run/docker.sock')) return false;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await Promise.race([getContainerRuntimeClient(), new Promise((_, rej) => setTimeout(() => rej(new Error('slow')), 3000))]);
    return true;
  } catch {
    return false;
  }
}

async function startContainer(): Promise<NatsHandle> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const c = await new GenericContainer('nats:2.10').withCommand(['-js']).withExposedPorts(4222)
    .withWaitStrategy(Wait.forLogMessage(/Server is ready/)).start();
  return { url: `nats://${c.getHost()}:${c.getMappedPort(4222)}`, source: 'container', stop: async () => { await c.stop(); } };
}

/** Spawns nats-server with JetStream; `host` lets multi-host tests bind a namespace address. */
export async function spawnNatsServer(opts: { host?: string; port?: number; wrap?: string[] } = {}): Promise<NatsHandle & { proc: ChildProcess }> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'phos-nats-'));
  const args = ['-js', '-a', host, '-p', String(port), '-sd', dir];
  const cmd = [...(opts.wrap ?? []), 'nats-server', ...args];
  const proc = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.once('error', (err) => { stderr += `\nspawn failed: ${err.message}`; });
  try {
    await waitForNats(host, port);
  } catch (err) {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}; nats-server said: ${stderr.trim() || '(nothing)'} — install it with: bash deploy/install.sh`);
  }
  return {
    url: `nats://${host}:${port}`, source: 'process', proc,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) { proc.kill('SIGTERM'); await exited; }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startNats(): Promise<NatsHandle> {
  const env = process.env.NATS_URL;
  if (env) return { url: env, source: 'env', stop: async () => {} };
  if (await dockerReachable()) return startContainer();
  return spawnNatsServer();
}
