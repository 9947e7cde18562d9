// Lazy restore through a real agent, CRIU and cudasim: `phos restore` returns once the app is thawed with
// every slab chunk pending at libphos's gate, and the agent fills the chunks in the background (gate-wait
// chunks first). The app steps before the fill ends and still finishes on its reference checksum; a chunk
// file whose hash no longer matches is found while filling, stays pending (the app waits, never sees its
// bytes), is named in the agent log and in ps (failed-fill), and a checkpoint of that process is refused.
// These run with image.prefill off, so every chunk waits at the gate; the last test turns it on (the
// default): chunks read while CRIU restores never reach the gate.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ProcessInfo } from '../../proto/src/index.ts';
import { assertContinuous, parseWorkloadLog, readWorkloadLog, referenceChecksum, waitForLog, workloadPath } from '../helpers/workload.ts';
import { appGone, gpuFiles, startAgent, type AgentHandle } from './agent-harness.ts';

type Fill = NonNullable<ProcessInfo['fill']>;
type Restored = ProcessInfo & { ms: number; releaseMs: number };

let agent: AgentHandle;
const noPrefill = join(mkdtempSync(join(tmpdir(), 'phos-lazy-')), 'agent.yaml');
writeFileSync(noPrefill, 'image:\n  prefill: false\n');
beforeEach(async (t) => { agent = await startAgent('26000-26999', t.task.name.startsWith('prefill') ? {} : { PHOS_AGENT_CONFIG: noPrefill }); });
afterEach(async () => { await agent.stop(); });

async function fillOf(pid: number): Promise<Fill | undefined> {
  const { processes } = await agent.call<{ processes: ProcessInfo[] }>('ps', { all: true });
  return processes.find((p) => p.pid === pid)?.fill;
}

async function fillEnded(pid: number, timeoutMs = 60_000): Promise<Fill> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const f = await fillOf(pid);
    if (f && f.state !== 'filling') return f;
    if (Date.now() > deadline) throw new Error(`fill of pid ${pid} did not end: ${JSON.stringify(f)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Flips bits of one byte in the n-th gpu/ chunk file of an image; returns the file's path. */
function corruptChunkFile(img: string, n: number, at: number, mask: number): string {
  const chunk = join(img, 'gpu', gpuFiles(img)[n]!);
  const bytes = readFileSync(chunk);
  bytes[at] = bytes[at]! ^ mask;
  writeFileSync(chunk, bytes);
  return chunk;
}

async function dumpCounter(args: string[], name = 'img'): Promise<{ pid: number; logPath: string; img: string; stepsAtDump: number }> {
  const { pid, logPath } = await agent.run([workloadPath('counter'), ...args], 'ctr');
  await waitForLog(logPath, (l) => l.steps.length >= 5);
  const img = join(agent.dir, name);
  const d = await agent.phosJson<{ result: { path: string } }>(['dump', '--pid', String(pid), '--dir', img]);
  expect(d.code, d.stderr).toBe(0);
  expect(d.last.result.path).toBe('keeper');
  return { pid, logPath, img, stepsAtDump: readWorkloadLog(logPath).steps.length };
}

describe('lazy restore (agent, CRIU, cudasim)', () => {
  it('counter 256 MiB: restore returns at the thaw, the app steps before the background fill ends, checksum = reference', async () => {
    // --verify-every 0: steps touch only the hot buffer, so a step needs a few chunks, not all of them.
    const args = ['--mib', '256', '--steps', '250', '--step-ms', '20', '--verify-every', '0'];
    const expected = referenceChecksum('counter', args);
    const { pid, logPath, img, stepsAtDump } = await dumpCounter(args);

    const r = await agent.call<Restored>('restore', { dir: img });
    expect(r.pid).toBe(pid);
    expect(r.state).toBe('running');
    expect(r.releaseMs).toBeGreaterThan(0);
    expect(r.fill?.chunksTotal).toBeGreaterThanOrEqual(128);
    expect(r.fill?.state, 'restore returned before the fill completed').toBe('filling');
    expect(r.fill!.chunksDone).toBeLessThan(r.fill!.chunksTotal);

    const f = await fillEnded(pid);
    expect(f).toMatchObject({ state: 'done', errors: [] });
    expect(f.chunksDone).toBe(f.chunksTotal);
    expect(f.bytesDone).toBe(f.bytesTotal);
    expect(agent.agentLog()).toContain('background fill complete');
    expect(agent.agentLog(), 'the app waited at the gate and the agent heard it (those chunks go first)').toMatch(/gate-wait/);

    const final = await waitForLog(logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 60_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
    const firstAfter = final.steps[stepsAtDump]!;
    expect(firstAfter.t, `first step after the restore (${firstAfter.t}) before the fill ended (${f.endedAt})`).toBeLessThan(f.endedAt!);

    const ps = await agent.phosJson<{ processes: ProcessInfo[] }>(['ps', '--all']);
    expect(ps.last.processes.find((p) => p.pid === pid)?.fill?.state).toBe('done');
  }, 120_000);

  it('a flipped byte in a gpu/ chunk: restore releases the app, the chunk stays pending, ps shows failed-fill naming the file', async () => {
    const args = ['--mib', '32', '--steps', '200', '--step-ms', '20', '--verify-every', '5'];
    const { pid, logPath, img, stepsAtDump } = await dumpCounter(args);
    const chunk = corruptChunkFile(img, 0, 12345, 0x01);

    const r = await agent.call<Restored>('restore', { dir: img });
    expect(r.pid).toBe(pid);
    const f = await fillEnded(pid);
    expect(f.state).toBe('failed');
    expect(f.errors.map((e) => e.path)).toContain(chunk);
    expect(f.chunksDone).toBeLessThan(f.chunksTotal);
    expect(agent.agentLog()).toContain(chunk);
    const ps = await agent.phos(['ps']);
    expect(ps.stdout).toMatch(new RegExp(`^${pid}\\s+ctr\\s+failed-fill`, 'm'));

    // The app runs but never sees the bad chunk's bytes: a step that needs it waits at the gate.
    await new Promise((res) => setTimeout(res, 1500));
    const l = parseWorkloadLog(readFileSync(logPath, 'utf8'));
    expect(l.steps.every((s) => s.ok)).toBe(true);
    expect(l.checksum).toBeNull();
    expect(l.steps.length).toBeGreaterThanOrEqual(stepsAtDump);
    expect(existsSync(`/proc/${pid}`)).toBe(true);

    // Its device memory is incomplete: a checkpoint of it is refused.
    const d = await agent.phos(['dump', '--pid', String(pid), '--dir', join(agent.dir, 'img2')]);
    expect(d.code).not.toBe(0);
    expect(d.stderr).toMatch(/^error ILLEGAL_STATE: .*fill from its image failed/m);
    expect(existsSync(`/proc/${pid}`)).toBe(true);
  }, 120_000);

  it('restore --verify refuses a flipped byte in a gpu/ chunk, naming the file, before any process exists', async () => {
    const { pid, img } = await dumpCounter(['--mib', '32', '--steps', '200', '--step-ms', '20'], 'img-verify');
    const chunk = corruptChunkFile(img, 1, 777, 0x80);
    const r = await agent.phos(['restore', '--dir', img, '--verify']);
    expect(r.code, r.stderr).toBe(7);
    expect(r.stderr).toMatch(/^error IMAGE_CORRUPT: /m);
    expect(r.stderr).toContain(chunk);
    expect(await appGone(pid)).toBe(true);
    const ps = await agent.phosJson<{ processes: { pid: number; state: string }[] }>(['ps']);
    expect(ps.last.processes.find((x) => x.pid === pid && x.state === 'running')).toBeUndefined();
  }, 120_000);

  it('prefill (the default): chunks read while CRIU restores never reach the gate; a flipped byte still stays pending, named', async () => {
    const args = ['--mib', '32', '--steps', '200', '--step-ms', '20', '--verify-every', '5'];
    const { pid, img } = await dumpCounter(args, 'img-prefill');
    const chunks = (JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8')) as { chunks: unknown[] }).chunks.length;
    const chunk = corruptChunkFile(img, 3, 4242, 0x10);

    const r = await agent.call<Restored>('restore', { dir: img });
    expect(r.pid).toBe(pid);
    expect(r.fill!.chunksTotal, 'chunks left to the gate').toBeLessThan(chunks);
    expect(r.fill!.chunksTotal, 'the corrupt chunk is never read into the app').toBeGreaterThanOrEqual(1);
    expect(agent.agentLog()).toMatch(/chunks read while CRIU restored/);
    const f = await fillEnded(pid);
    expect(f.state).toBe('failed');
    expect(f.errors.map((e) => e.path)).toEqual([chunk]);
    expect(existsSync(`/proc/${pid}`)).toBe(true);
  }, 120_000);
});
