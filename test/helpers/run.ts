// Runs a command without blocking the test worker's event loop (vitest's RPC times out if a worker
// blocks for long in spawnSync), collecting stdout+stderr.
import { spawn } from 'node:child_process';

export function runCommand(cmd: string, args: string[], opts: { timeoutMs: number; env?: NodeJS.ProcessEnv; cwd?: string }): Promise<{ ok: boolean; code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => chunks.push(d));
    child.stderr.on('data', (d: Buffer) => chunks.push(d));
    const timer = setTimeout(() => { chunks.push(Buffer.from(`\n[killed after ${opts.timeoutMs} ms]\n`)); child.kill('SIGKILL'); }, opts.timeoutMs);
    child.once('error', (err) => { chunks.push(Buffer.from(`\n${err.message}\n`)); });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, code, out: Buffer.concat(chunks).toString('utf8') });
    });
  });
}
