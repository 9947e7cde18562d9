// `phos up` brings the embedded mesh up on one machine (nats-server, coordinator, agent joined to it) and
// takes all of it down on SIGINT.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../helpers/nats.ts';
import { ROOT } from '../helpers/paths.ts';
import { runCommand } from '../helpers/run.ts';

describe('phos up', () => {
  it('starts NATS, a coordinator and an agent that registers; Ctrl-C stops them all', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'phos-up-'));
    const port = await freePort();
    const phos = join(ROOT, 'bin', 'phos');
    const up = spawn(phos, ['up', '--state-dir', dir, '--nats-port', String(port), '--node', 'uptest'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    up.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    up.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<number>((r) => up.once('exit', (code) => r(code ?? -1)));
    try {
      const end = Date.now() + 60_000;
      while (!out.includes('phos mesh up')) {
        if (Date.now() > end || up.exitCode !== null) throw new Error(`phos up did not come up:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(out).toMatch(/agent uptest on cudasim/);
      let nodes: { node: string; alive: boolean; gpus: unknown[] }[] = [];
      for (let i = 0; i < 50 && !nodes.some((n) => n.node === 'uptest'); i++) {
        const r = await runCommand(phos, ['nodes', '--json', '--nats', `nats://127.0.0.1:${port}`], { timeoutMs: 20_000 });
        if (r.code === 0) nodes = JSON.parse(r.out.trim().split('\n').at(-1)!) as typeof nodes;
        if (!nodes.some((n) => n.node === 'uptest')) await new Promise((res) => setTimeout(res, 200));
      }
      expect(nodes.find((n) => n.node === 'uptest')).toMatchObject({ alive: true });
      up.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(existsSync(join(dir, 'control.sock'))).toBe(false);
      const after = await runCommand(phos, ['nodes', '--nats', `nats://127.0.0.1:${port}`], { timeoutMs: 20_000 });
      expect(after.code).toBe(5); // NATS is gone with it
    } finally {
      if (up.exitCode === null) up.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
