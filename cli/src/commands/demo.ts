// `phos demo`: the embedded default. Builds two hosts on this machine (network namespaces), brings up
// the mesh on them (nats-server, coordinator, one node agent per host; cudasim when no NVIDIA driver is
// found), starts the `counter` workload under phos on the first, live-migrates it to the second with
// `phos migrate`, and checks that it finished there with the checksum of an uninterrupted run. Without
// root (namespaces, CRIU) it runs the one-node checkpoint/restore tour instead (--local forces that).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hostsUnavailable, startLocalMesh } from '../../../common/src/index.ts';
import { PhosError, type Message, type ProcessInfo } from '../../../proto/src/index.ts';
import { callAgent } from '../agent-client.ts';
import { simulatedDriverDir } from '../driver.ts';
import { formatBytes } from '../output.ts';

export const DEMO_HELP = `usage: phos demo [--mib N] [--local] [--keep]

Runs phos end to end on this machine. Two hosts (network namespaces, so this needs root) each get a node
agent, with nats-server and the coordinator on the first; the counter workload (--mib MiB of GPU memory,
default 256) starts under phos on host a and is live-migrated to host b with phos migrate; the demo
prints the phases, the downtime, and checks that counter finished on b with the same checksum as an
uninterrupted run. --local: one node instead — pre-dump while it runs, dump, restore, same check.
Uses the NVIDIA driver when one is installed, else cudasim (the simulated GPU).
--keep leaves the temp directory (logs, images) in place.
Exit status: 0 when the workload continued bit-exact; otherwise the error's status.
`;

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const BUILD = join(ROOT, 'build', 'native');
const AGENT_MAIN = join(ROOT, 'services', 'node-agent', 'src', 'main.ts');

function say(msg: string): void {
  process.stdout.write(`${msg}\n`);
}

async function waitFor(what: string, pred: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new PhosError('TIMEOUT', `demo: ${what} did not happen within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function stepsIn(log: string): { n: number; t: number; ok: boolean }[] {
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8').split('\n').flatMap((l) => {
    const m = /^step (\d+) t ([\d.]+) (ok|BAD)/.exec(l);
    return m ? [{ n: Number(m[1]), t: Number(m[2]), ok: m[3] === 'ok' }] : [];
  });
}

async function startAgent(dir: string, simDir: string | null): Promise<{ child: ChildProcess; control: string }> {
  const control = join(dir, 'control.sock');
  const cfg = [
    `socket: ${join(dir, 'agent.sock')}`, `controlSocket: ${control}`, `stateDir: ${join(dir, 'state')}`,
    'node: demo', 'pidRange: "21000-21999"', 'image:', '  fsync: false',
    ...(simDir ? ['env:', `  LD_LIBRARY_PATH: "${simDir}"`, `libcuda: ${join(simDir, 'libcuda.so.1')}`] : []),
  ].join('\n');
  writeFileSync(join(dir, 'agent.yaml'), cfg + '\n');
  const child = spawn(process.execPath, [...process.execArgv, AGENT_MAIN, '--config', join(dir, 'agent.yaml')], {
    stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, PHOS_LOG_LEVEL: process.env.PHOS_LOG_LEVEL ?? 'warn' },
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-4000); });
  await waitFor('the agent start', () => existsSync(control) || child.exitCode !== null, 30_000);
  if (child.exitCode !== null) throw new PhosError('AGENT_UNAVAILABLE', `the demo agent exited: ${err.trim().slice(-500)}`);
  return { child, control };
}

type State = Message<'migration-state'>;

/** Two hosts, a migration between them, and the bit-exact check. */
async function meshDemo(mib: number, keep: boolean): Promise<number> {
  const { counter, args, reference, simDir } = prepare(mib);
  const dir = mkdtempSync(join(tmpdir(), 'phos-demo-'));
  say(`phos demo: two hosts on this machine (network namespaces), ${simDir ? 'cudasim (simulated GPU)' : 'the NVIDIA driver'}; work dir ${dir}`);
  const mesh = await startLocalMesh({ nodes: ['demo-a', 'demo-b'], dir, simDir, pidBase: 21000, runDir: '/run/phos-demo' });
  const [a, b] = mesh.nodes as [typeof mesh.nodes[0], typeof mesh.nodes[0]];
  try {
    say(`  mesh up: NATS ${mesh.natsUrl}, coordinator, agents ${a.name} (${a.host.addr}) and ${b.name} (${b.host.addr})`);
    const info = await callAgent(a.control, 'run', { argv: [counter, ...args], job: 'counter', cwd: dir, env: {}, preload: true }) as ProcessInfo;
    say(`  ${a.name}: started counter as pid ${info.pid} under phos, ${mib} MiB of GPU memory; its output: ${info.logPath}`);
    await waitFor('10 steps', () => stepsIn(info.logPath).length >= 10, 60_000);
    say(`  phos migrate --pid ${info.pid} --to ${b.name}`);
    let last: State | null = null;
    const r = await mesh.phos(['migrate', '--pid', String(info.pid), '--from', a.name, '--to', b.name, '--nats', mesh.natsUrl, '--json'], undefined, 300_000, (line) => {
      if (!line.startsWith('{')) return;
      const s = JSON.parse(line) as State;
      if (s.phase !== last?.phase) say(`    ${s.phase.padEnd(16)} sent ${formatBytes(s.bytesSent)} of ${formatBytes(s.bytesTotal)}`);
      last = s;
    });
    const end = last as State | null;
    if (r.code !== 0 || end?.phase !== 'succeeded') {
      throw new PhosError('INTERNAL', `demo: the migration ended ${end?.phase ?? 'without a state'}: ${end?.error?.message ?? r.stderr.trim().slice(-500)}`, { remedy: `rerun with --keep and see the logs in ${dir}` });
    }
    const atMove = stepsIn(info.logPath).length;
    say(`  migrated: pid ${info.pid} runs on ${b.name} (step ${atMove} so far); downtime ${end.downtimeMs!.toFixed(0)} ms`);
    return await check(info.logPath, reference);
  } finally {
    await mesh.stop();
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
}

function prepare(mib: number): { counter: string; args: string[]; reference: string; simDir: string | null } {
  const counter = join(BUILD, 'workloads', 'counter');
  if (!existsSync(counter)) throw new PhosError('NOT_FOUND', `${counter} is not built`, { remedy: 'bash deploy/install.sh' });
  const simDir = simulatedDriverDir();
  const args = ['--mib', String(mib), '--steps', '400', '--step-ms', '20'];
  const env = simDir ? { ...process.env, LD_LIBRARY_PATH: simDir } : process.env;
  const reference = /checksum (\w+)/.exec(execFileSync(counter, [...args, '--reference'], { encoding: 'utf8', env }))![1]!;
  return { counter, args, reference, simDir };
}

/** Waits for the workload's end and checks every step and the checksum. */
async function check(logPath: string, reference: string): Promise<number> {
  await waitFor('the end of the run', () => /^checksum /m.test(readFileSync(logPath, 'utf8')) || stepsIn(logPath).some((s) => !s.ok), 120_000);
  const got = /^checksum (\w+)/m.exec(readFileSync(logPath, 'utf8'))?.[1];
  const steps = stepsIn(logPath);
  const continuous = steps.every((s, i) => s.n === i + 1 && s.ok);
  if (got !== reference || !continuous) {
    throw new PhosError('IMAGE_CORRUPT', `demo: the workload did not continue bit-exact (checksum ${got ?? 'none'}, expected ${reference}; steps continuous: ${continuous})`, { remedy: `see ${logPath}` });
  }
  say(`  ok: ${steps.length} steps, every one verified, checksum ${got} equals an uninterrupted run`);
  return 0;
}

export async function demo(argv: string[]): Promise<number> {
  let values: { mib?: string; keep?: boolean; local?: boolean };
  try { values = parseArgs({ args: argv, options: { mib: { type: 'string' }, keep: { type: 'boolean' }, local: { type: 'boolean' }, json: { type: 'boolean' } }, strict: true }).values; } catch (err) {
    throw new PhosError('BAD_ARGS', (err as Error).message, { remedy: 'phos demo --help' });
  }
  const mib = Number(values.mib ?? 256);
  if (!Number.isSafeInteger(mib) || mib < 8) throw new PhosError('BAD_ARGS', `phos demo: --mib must be an integer >= 8, got ${values.mib}`);
  const why = hostsUnavailable();
  if (values.local || why) {
    if (why && !values.local) say(`phos demo: ${why}; showing one node instead`);
    return localDemo(mib, values.keep ?? false);
  }
  return meshDemo(mib, values.keep ?? false);
}

/** One node: pre-dump while it runs, dump, restore, bit-exact check. */
async function localDemo(mib: number, keep: boolean): Promise<number> {
  const { counter, args, reference, simDir } = prepare(mib);
  const dir = mkdtempSync(join(tmpdir(), 'phos-demo-'));
  say(`phos demo: one node on ${simDir ? 'cudasim (simulated GPU)' : 'the NVIDIA driver'}, counter with ${mib} MiB of GPU memory; work dir ${dir}`);
  const { child, control } = await startAgent(dir, simDir);
  try {
    const info = await callAgent(control, 'run', { argv: [counter, ...args], job: 'counter', cwd: dir, env: {}, preload: true }) as ProcessInfo;
    say(`  started pid ${info.pid} under phos (libphos preloaded); its output: ${info.logPath}`);
    await waitFor('10 steps', () => stepsIn(info.logPath).length >= 10, 60_000);
    const t0 = Date.now();
    const pre = await callAgent(control, 'pre-dump', { pid: info.pid, dir: join(dir, 'img-pre') }) as { path: string; stallMs: number };
    say(`  pre-dump (${pre.path} path): the app was paused ${(pre.stallMs / 1000).toFixed(2)} s, image written in ${((Date.now() - t0) / 1000).toFixed(2)} s while it kept running`);
    await waitFor('5 more steps', () => stepsIn(info.logPath).length >= 20, 60_000);
    const d = await callAgent(control, 'dump', { pid: info.pid, dir: join(dir, 'img') }) as { path: string };
    const atDump = stepsIn(info.logPath).length;
    say(`  dump (${d.path} path): process ended after step ${atDump}`);
    const r0 = Date.now();
    await callAgent(control, 'restore', { dir: join(dir, 'img') });
    await waitFor('the first step after the restore', () => stepsIn(info.logPath).length > atDump, 60_000);
    say(`  restore: running again after ${((Date.now() - r0) / 1000).toFixed(2)} s, continuing from step ${atDump + 1}`);
    return await check(info.logPath, reference);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
}
