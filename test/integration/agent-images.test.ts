// The agent through the CLI: run/ps/logs, and the ways a checkpoint or restore must refuse cleanly —
// an unmanaged pid, a full disk (app keeps running, no partial image), a truncated gpu/ chunk or CRIU file
// (restore names the file before any process exists) — plus incremental images that reference their parent.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertContinuous, readWorkloadLog, referenceChecksum, waitForLog, workloadPath } from '../helpers/workload.ts';
import { appGone, gpuFiles, startAgent, type AgentHandle } from './agent-harness.ts';

const COUNTER = (steps: number) => [workloadPath('counter'), '--mib', '32', '--steps', String(steps), '--step-ms', '20'];
let agent: AgentHandle;
const mounts: string[] = [];
beforeEach(async () => { agent = await startAgent('25000-25999'); });
afterEach(async () => {
  for (const m of mounts.splice(0)) { try { execFileSync('umount', [m]); } catch { /* not mounted */ } }
  await agent.stop();
});

describe('phos run / ps / logs', () => {
  it('starts a workload under the agent with a pid from the range and shows it in ps and logs', async () => {
    const r = await agent.phos(['run', '--job', 'ctr', '--', ...COUNTER(40)]);
    expect(r.code, r.stderr).toBe(0);
    const pid = Number(r.stdout.trim());
    expect(pid).toBeGreaterThanOrEqual(25000);
    expect(pid).toBeLessThanOrEqual(25999);
    const ps = await agent.phos(['ps']);
    expect(ps.stdout).toMatch(new RegExp(`^${pid}\\s+ctr\\s+(running|exited)`, 'm'));
    const f = await agent.phos(['logs', 'ctr', '-f']);
    expect(f.code, f.stderr).toBe(0);
    expect(f.stdout).toMatch(/^ready$/m);
    expect(f.stdout).toMatch(/^checksum [0-9a-f]{16}$/m);
    const ps2 = await agent.phosJson<{ processes: { pid: number; state: string; exitCode: number }[] }>(['ps']);
    expect(ps2.last.processes.find((p) => p.pid === pid)).toMatchObject({ state: 'exited', exitCode: 0 });
  });
});

describe('orphans', () => {
  it('a managed app\'s orphaned child becomes the agent\'s (subreaper) and is reaped when it ends: no zombie', async () => {
    // bin/phos agent runs the agent as its only child.
    const agentPid = Number(readFileSync(`/proc/${agent.proc.pid}/task/${agent.proc.pid}/children`, 'utf8').trim().split(' ')[0]);
    const p = await agent.run(['sh', '-c', 'sleep 1 & echo "orphan $!"; exit 0'], 'orphaner');
    const log = () => readFileSync(p.logPath, 'utf8');
    for (const end = Date.now() + 5000; !/^orphan \d+$/m.test(log()) && Date.now() < end;) await new Promise((res) => setTimeout(res, 20));
    const orphan = Number(/^orphan (\d+)$/m.exec(log())![1]);
    for (const end = Date.now() + 3000; existsSync(`/proc/${p.pid}`) && Date.now() < end;) await new Promise((res) => setTimeout(res, 20));
    expect(Number(/\) \S+ (\d+) /.exec(readFileSync(`/proc/${orphan}/stat`, 'utf8'))![1])).toBe(agentPid);
    // sleep ends after 1 s; one sweep sees it a zombie, the next reaps it.
    for (const end = Date.now() + 8000; existsSync(`/proc/${orphan}`) && Date.now() < end;) await new Promise((res) => setTimeout(res, 100));
    expect(existsSync(`/proc/${orphan}`)).toBe(false);
  });
});

describe('refusals', () => {
  it('refuses an unmanaged pid with NOT_MANAGED and exit status 3', async () => {
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const r = await agent.phos(['pre-dump', '--pid', String(other.pid), '--dir', join(agent.dir, 'x')]);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/^error NOT_MANAGED: pid \d+ was not started by phos/m);
      expect(r.stderr).toMatch(/^remedy: /m);
      expect(existsSync(join(agent.dir, 'x'))).toBe(false);
    } finally { other.kill('SIGKILL'); }
  });

  it('a dump to a full tmpfs is DISK_FULL; the app keeps running and no partial image is left', async () => {
    const full = join(agent.dir, 'full');
    mkdirSync(full);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', full]);
    mounts.push(full);
    const p = await agent.run(COUNTER(300), 'ctr');
    await waitForLog(p.logPath, (l) => l.steps.length >= 5);
    const r = await agent.phos(['dump', '--pid', String(p.pid), '--dir', join(full, 'img')]);
    expect(r.code, r.stderr).toBe(7);
    expect(r.stderr).toMatch(/^error DISK_FULL: /m);
    expect(readdirSync(full).filter((e) => e !== 'lost+found')).toEqual([]);
    const final = await waitForLog(p.logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 30_000);
    expect(final.steps.every((s) => s.ok)).toBe(true);
  });

  // A flipped byte (right size, wrong hash) is found while the chunk is filled after the thaw: agent-lazy.test.ts.
  it('restore refuses a truncated gpu/ chunk and a truncated CRIU file, naming the file, before any process exists', async () => {
    const p = await agent.run(COUNTER(200), 'ctr');
    await waitForLog(p.logPath, (l) => l.steps.length >= 5);
    const img = join(agent.dir, 'img');
    const d = await agent.phos(['dump', '--pid', String(p.pid), '--dir', img]);
    expect(d.code, d.stderr).toBe(0);
    const chunk = join(img, 'gpu', gpuFiles(img)[0]!);
    const bytes = readFileSync(chunk);
    writeFileSync(chunk, bytes.subarray(0, bytes.length - 1));
    const r = await agent.phos(['restore', '--dir', img]);
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(/^error IMAGE_CORRUPT: /m);
    expect(r.stderr).toContain(chunk);
    expect(await appGone(p.pid)).toBe(true);

    writeFileSync(chunk, bytes);
    const pages = readdirSync(join(img, 'criu')).filter((f) => f.startsWith('pages-')).map((f) => join(img, 'criu', f))
      .sort((a, b) => statSync(b).size - statSync(a).size)[0]!;
    truncateSync(pages, statSync(pages).size - 4096);
    const t = await agent.phos(['restore', '--dir', img]);
    expect(t.code).toBe(7);
    expect(t.stderr).toContain(pages);
    expect(await appGone(p.pid)).toBe(true);
  });
});

describe('pid clash', () => {
  /** Forks `sleep 60` with the machine's pid cursor just below pid (root: ns_last_pid); the cursor is put back. */
  function forkAt(pid: number): ReturnType<typeof spawn> {
    const cursor = readFileSync('/proc/sys/kernel/ns_last_pid', 'utf8').trim();
    writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    writeFileSync('/proc/sys/kernel/ns_last_pid', cursor); // later forks must not take the image's thread ids
    return child;
  }
  const kill = async (c: ReturnType<typeof spawn>) => { c.kill('SIGKILL'); if (c.exitCode === null && c.signalCode === null) await new Promise((res) => c.once('exit', res)); };

  it('a dumped pid is held for its restore; a pid taken anyway is refused (ILLEGAL_STATE) before CRIU runs, and restores once free', async () => {
    const p = await agent.run(COUNTER(300), 'ctr');
    await waitForLog(p.logPath, (l) => l.steps.length >= 5);
    const img = join(agent.dir, 'img');
    const d = await agent.phos(['dump', '--pid', String(p.pid), '--dir', img]);
    expect(d.code, d.stderr).toBe(0);
    // The agent holds the pid with a placeholder: a fork aimed at it gets another pid.
    const cmd = () => { try { return readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0')[0]; } catch { return null; } };
    for (const end = Date.now() + 3000; cmd() !== 'phos-pid-hold' && Date.now() < end;) await new Promise((res) => setTimeout(res, 20));
    expect(cmd(), agent.agentLog().slice(-3000)).toBe('phos-pid-hold');
    const probe = forkAt(p.pid);
    expect(probe.pid).not.toBe(p.pid);
    await kill(probe);

    // A hold can end (its time runs out, someone kills it); a process that takes the pid then is a clash.
    process.kill(p.pid, 'SIGKILL');
    // Other test files fork meanwhile and may take the pid first (for as long as they run): each try
    // waits until it is free again.
    let squatter: ReturnType<typeof spawn> | null = null;
    for (const end = Date.now() + 20_000; squatter?.pid !== p.pid && Date.now() < end;) {
      if (squatter) await kill(squatter);
      while (existsSync(`/proc/${p.pid}`) && Date.now() < end) await new Promise((res) => setTimeout(res, 10));
      squatter = forkAt(p.pid);
    }
    expect(squatter?.pid).toBe(p.pid);
    try {
      const r = await agent.phos(['restore', '--dir', img]);
      expect(r.code).toBe(8);
      expect(r.stderr).toMatch(new RegExp(`^error ILLEGAL_STATE: pid ${p.pid} is in use on this node \\(by 'sleep'\\)`, 'm'));
      expect(existsSync(join(img, 'criu', 'restore.log'))).toBe(false);
    } finally {
      await kill(squatter!);
    }
    const ok = await agent.phos(['restore', '--dir', img]);
    expect(ok.code, ok.stderr).toBe(0);
    const final = await waitForLog(p.logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 30_000);
    assertContinuous(final);
  });
});

describe('safe path', () => {
  it('a process without libphos dumps with the GPU state in the CRIU image and restores bit-exact', async () => {
    const args = ['--mib', '8', '--steps', '250', '--step-ms', '20'];
    const r0 = await agent.phosJson<{ process: { pid: number; logPath: string } }>(['run', '--no-preload', '--job', 'plain', '--', workloadPath('counter'), ...args]);
    expect(r0.code, r0.stderr).toBe(0);
    const { pid, logPath } = r0.last.process;
    await waitForLog(logPath, (l) => l.steps.length >= 5);
    const img = join(agent.dir, 'img');
    const d = await agent.phosJson<{ result: { path: string; safeReason: string; chunks: number } }>(['dump', '--pid', String(pid), '--dir', img]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.last.result).toMatchObject({ path: 'safe', chunks: 0 });
    expect(d.last.result.safeReason).toMatch(/libphos is not connected/);
    // Its image, the device memory included, went through the zero-page pass (image.trimZeroPages): the
    // restore below must still be bit-exact.
    expect(agent.agentLog()).toMatch(/"zeroPagesLeftOut":\d+.*CRIU image: /);
    const r = await agent.phos(['restore', '--dir', img]);
    expect(r.code, r.stderr).toBe(0);
    const final = await waitForLog(logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 30_000);
    assertContinuous(final);
    expect(final.checksum).toBe(referenceChecksum('counter', args));
  });
});

describe('incremental images', () => {
  it('a pre-dump with --parent writes only the chunks the parent does not hold (counter: cold buffers come from the parent)', async () => {
    // Two runs of the same counter: their cold buffers are the same bytes, their hot buffer differs by step.
    const a = await agent.run(COUNTER(400), 'a');
    await waitForLog(a.logPath, (l) => l.steps.length >= 5);
    const img1 = join(agent.dir, 'img1');
    const r1 = await agent.phosJson<{ result: { chunks: number; chunksWritten: number; chunksFromParent: number } }>(['pre-dump', '--pid', String(a.pid), '--dir', img1]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(gpuFiles(img1).length).toBe(r1.last.result.chunksWritten);
    const aSteps = readWorkloadLog(a.logPath).steps.length; // A was frozen at or before this step
    const b = await agent.run(COUNTER(400), 'b');
    await waitForLog(b.logPath, (l) => l.steps.length >= aSteps + 3);
    const img2 = join(agent.dir, 'img2');
    const r2 = await agent.phosJson<{ result: { chunks: number; chunksWritten: number; chunksFromParent: number } }>(['pre-dump', '--pid', String(b.pid), '--dir', img2, '--parent', img1]);
    expect(r2.code, r2.stderr).toBe(0);
    const { chunks, chunksWritten, chunksFromParent } = r2.last.result;
    expect(chunks).toBe(r1.last.result.chunks);
    // 32 MiB of cold buffers = 16 chunks at least come from the parent; only the hot buffer's chunk is new.
    expect(chunksFromParent).toBeGreaterThanOrEqual(16);
    expect(chunksWritten).toBe(1);
    expect(gpuFiles(img2).length).toBe(1);
    const m = JSON.parse(readFileSync(join(img2, 'manifest.json'), 'utf8')) as { parent: string; chunks: { file: string }[] };
    expect(m.parent).toBe(img1);
    expect(m.chunks.filter((c) => c.file.startsWith('../img1/gpu/')).length).toBe(chunksFromParent);
  });
});
