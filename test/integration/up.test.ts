// `phos up` brings the embedded mesh up on one machine (nats-server, coordinator, agent joined to it) and
// takes all of it down on SIGINT.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../helpers/nats.ts';
import { ROOT } from '../helpers/paths.ts';
import { runCommand } from '../helpers/run.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('phos up', () => {
  it('starts NATS, a coordinator and an agent that registers; Ctrl-C stops them all', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'phos-up-'));
    const port = await freePort();
    const nats = `nats://127.0.0.1:${port}`;
    const phos = join(ROOT, 'bin', 'phos');
    // Its own process group (detached), which its children share: the cleanup below kills all of them,
    // so no nats-server outlives a failed test and keeps writing into `dir` while it is removed.
    const up = spawn(phos, ['up', '--state-dir', dir, '--nats-port', String(port), '--node', 'uptest'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    up.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    up.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<number>((r) => up.once('exit', (code) => r(code ?? -1)));
    const logs = () => ['nats', 'coordinator', 'agent'].map((n) => {
      let text = '';
      try { text = readFileSync(join(dir, 'logs', `${n}.log`), 'utf8').slice(-3000); } catch { /* not started */ }
      return `--- ${n}.log (tail)\n${text}`;
    }).join('\n');
    try {
      const upBy = Date.now() + 90_000;
      while (!out.includes('phos mesh up')) {
        if (Date.now() > upBy || up.exitCode !== null) throw new Error(`phos up did not come up:\n${out}\n${logs()}`);
        await sleep(100);
      }
      expect(out).toMatch(/agent uptest on cudasim/);

      // The agent registers right after it starts; on a loaded machine each `phos nodes` (a fresh node
      // process) can take seconds, so poll until a deadline rather than for a number of tries.
      let nodes: { node: string; alive: boolean; gpus: unknown[] }[] = [];
      const tries: string[] = [];
      const registeredBy = Date.now() + 60_000;
      while (!nodes.some((n) => n.node === 'uptest') && Date.now() < registeredBy) {
        const t0 = Date.now();
        const r = await runCommand(phos, ['nodes', '--json', '--nats', nats], { timeoutMs: 30_000 });
        tries.push(`exit ${r.code} after ${Date.now() - t0} ms: ${r.out.trim().slice(-300)}`);
        if (r.code === 0) nodes = JSON.parse(r.out.trim().split('\n').at(-1)!) as typeof nodes;
        if (!nodes.some((n) => n.node === 'uptest')) await sleep(250);
      }
      expect(nodes.find((n) => n.node === 'uptest'), `phos nodes never listed uptest:\n${tries.join('\n')}\n${logs()}`).toMatchObject({ alive: true });

      up.kill('SIGINT');
      const code = await Promise.race([exited, sleep(30_000).then(() => 'still running 30 s after SIGINT')]);
      expect(code, `${out}\n${logs()}`).toBe(0);
      expect(existsSync(join(dir, 'control.sock'))).toBe(false);
      const after = await runCommand(phos, ['nodes', '--nats', nats], { timeoutMs: 30_000 });
      expect(after.code, after.out).toBe(5); // NATS is gone with it
    } finally {
      // The whole group: phos up and whatever it started (nats-server, coordinator, agent), even when
      // phos up itself has already exited.
      try { process.kill(-up.pid!, 'SIGKILL'); } catch { /* no such group: all gone */ }
      await Promise.race([exited, sleep(10_000)]);
      rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    }
  }, 300_000);
});
