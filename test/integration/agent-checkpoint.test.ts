// phos pre-dump / dump / restore per workload through a real agent, real CRIU and cudasim: a pre-dump
// leaves the app running to its reference checksum; dump + restore (lazy: released with chunks pending,
// filled in the background) continues from the last step bit-exact and `phos logs` shows the output from
// before and after.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertContinuous, parseWorkloadLog, referenceChecksum, waitForLog, workloadPath, WORKLOADS, type Workload } from '../helpers/workload.ts';
import { appGone, gpuFiles, startAgent, type AgentHandle } from './agent-harness.ts';
import { CRIU_KDAT_DIR } from '../../common/src/index.ts';

const ARGS: Record<Workload, string[]> = {
  // Long enough (≈ 5 s) that the CLI (≈ 1-2 s to start under load) finds the process still running.
  counter: ['--mib', '32', '--steps', '250', '--step-ms', '20'],
  streams: ['--steps', '250', '--step-ms', '20'],
  'vmm-grow': ['--steps', '200', '--step-ms', '20'],
  'ptr-chase': ['--steps', '250', '--step-ms', '20'],
};

let agent: AgentHandle;
// image.prefill off: every restore here releases the app with all its slab chunks behind libphos's gate,
// so each workload runs through the on-demand fill (with prefill, a small image can be whole before the
// thaw; agent-lazy and agent-stage restore with it on).
const config = join(mkdtempSync(join(tmpdir(), 'phos-ckpt-')), 'agent.yaml');
writeFileSync(config, 'image:\n  prefill: false\n');
beforeEach(async () => { agent = await startAgent('23000-23999', { PHOS_AGENT_CONFIG: config }); });
afterEach(async () => { await agent.stop(); });

async function runWorkload(name: Workload): Promise<{ pid: number; logPath: string }> {
  const p = await agent.run([workloadPath(name), ...ARGS[name]], name);
  await waitForLog(p.logPath, (l) => l.steps.length >= 5);
  return p;
}

describe('phos pre-dump / dump / restore (agent, CRIU, cudasim)', () => {
  it.each(WORKLOADS)('%s: pre-dump leaves it running to the reference checksum', async (name) => {
    const expected = referenceChecksum(name, ARGS[name]);
    const { pid, logPath } = await runWorkload(name);
    const img = join(agent.dir, 'img');
    const r = await agent.phosJson<{ ok: boolean; result: { path: string; chunks: number; chunksWritten: number } }>(['pre-dump', '--pid', String(pid), '--dir', img]);
    expect(r.code, `${JSON.stringify(r.last)} ${r.stderr}`).toBe(0);
    expect(r.lines.some((l) => l.t === 'progress' && l.phase === 'criu-dump')).toBe(true);
    const m = JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8')) as { sealed: boolean; kind: string; agent: { path: string }; chunks: unknown[] };
    // libphos holds every device byte of these workloads: the keeper path (freeze, empty driver checkpoint, thaw).
    expect(m).toMatchObject({ sealed: true, kind: 'pre-dump', agent: { path: 'keeper' } });
    expect(gpuFiles(img).length).toBe(r.last.result.chunksWritten);
    // The driver's host copy (cudasim: 8 MiB of context state, all zero but its first page) lost its zero
    // pages before CRIU dumped it; cudasim's driver restore found the rest intact, or the pre-dump failed.
    const shed = agent.agentLog().split('\n').filter((l) => l.includes('zero pages of the driver copy dropped')).map((l) => JSON.parse(l) as { pid: number; droppedBytes: number; scannedBytes: number });
    expect(shed.find((e) => e.pid === pid)).toMatchObject({ droppedBytes: (8 << 20) - 4096 });
    const final = await waitForLog(logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 60_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
  });

  it.each(WORKLOADS)('%s: dump then restore continues from its last step bit-exact; logs span both', async (name) => {
    const expected = referenceChecksum(name, ARGS[name]);
    const { pid, logPath } = await runWorkload(name);
    const img = join(agent.dir, 'img');
    // criu keeps its kernel-probe cache in a root-only folder; one anybody could write to is replaced.
    if (existsSync(CRIU_KDAT_DIR)) chmodSync(CRIU_KDAT_DIR, 0o777);
    const d = await agent.phosJson<{ result: { path: string } }>(['dump', '--pid', String(pid), '--dir', img]);
    expect(d.code, `${JSON.stringify(d.last)} ${d.stderr}`).toBe(0);
    expect(d.last.result.path).toBe('keeper');
    expect(statSync(CRIU_KDAT_DIR).mode & 0o777).toBe(0o700);
    const stepsAtDump = parseWorkloadLog(readFileSync(logPath, 'utf8')).steps.length;
    expect(await appGone(pid)).toBe(true);
    const ps1 = await agent.phosJson<{ processes: { pid: number; state: string }[] }>(['ps']);
    expect(ps1.last.processes.find((p) => p.pid === pid)?.state).toBe('dumped');

    const r = await agent.phosJson<{ result: { pid: number; fill?: { chunksTotal: number } } }>(['restore', '--dir', img]);
    expect(r.code, `${JSON.stringify(r.last)} ${r.stderr}\n${agent.agentLog().slice(-3000)}`).toBe(0);
    expect(r.last.result.pid).toBe(pid);
    // The dump left the cache: the restore, inside the app's downtime, does not probe the kernel again.
    expect(readFileSync(join(img, 'criu', 'restore.log'), 'utf8')).toContain(`Loaded kdat cache from ${CRIU_KDAT_DIR}/criu.kdat`);
    // Lazy: the app was released with its slab chunks pending and they filled in the background
    // (ptr-chase's launches widen to every pending chunk, so it waits for the whole fill: still bit-exact).
    expect(r.last.result.fill?.chunksTotal).toBeGreaterThan(0);
    const final = await waitForLog(logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 60_000);
    assertContinuous(final);
    expect(final.steps.length).toBeGreaterThan(stepsAtDump);
    expect(final.checksum).toBe(expected);
    const ps2 = await agent.phosJson<{ processes: { pid: number; fill?: { state: string; chunksDone: number; chunksTotal: number } }[] }>(['ps']);
    const fill = ps2.last.processes.find((p) => p.pid === pid)?.fill;
    expect(fill).toMatchObject({ state: 'done' });
    expect(fill!.chunksDone).toBe(fill!.chunksTotal);
    // The agent reaps what CRIU restored (its subreaper): the exit status is known and no zombie keeps the pid.
    let ended: { state: string; exitCode: number | null } | undefined;
    for (const end = Date.now() + 10_000; Date.now() < end; await new Promise((res) => setTimeout(res, 200))) {
      ended = (await agent.phosJson<{ processes: { pid: number; state: string; exitCode: number | null }[] }>(['ps'])).last.processes.find((p) => p.pid === pid);
      if (ended?.state === 'exited') break;
    }
    expect(ended).toMatchObject({ state: 'exited', exitCode: 0 });
    expect(existsSync(`/proc/${pid}`)).toBe(false);

    const logs = await agent.phos(['logs', name]);
    expect(logs.code, logs.stderr).toBe(0);
    const seen = parseWorkloadLog(logs.stdout);
    expect(seen.ready).toBe(true);
    expect(seen.steps.length).toBe(final.steps.length); // steps from before the dump and after the restore
    expect(seen.checksum).toBe(expected);
  });
});
