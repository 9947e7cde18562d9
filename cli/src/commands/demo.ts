// `phos demo`: the embedded default. Brings up a node agent on this machine (on cudasim when no NVIDIA
// driver is found), starts the `counter` workload under phos, pre-dumps it while it runs, dumps it,
// restores it, and checks that it finished with the checksum of an uninterrupted run. Everything lives
// in a temp directory that is removed afterwards.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PhosError, type ProcessInfo } from '../../../proto/src/index.ts';
import { callAgent } from '../agent-client.ts';
import { simulatedDriverDir } from '../driver.ts';

export const DEMO_HELP = `usage: phos demo [--mib N] [--keep]

Runs phos end to end on this machine: a node agent, the counter workload (--mib MiB of GPU memory,
default 256) started with phos run, a pre-dump while it runs, a dump, a restore, and a check that it
finished with the same checksum as an uninterrupted run. Uses the NVIDIA driver when one is installed,
else cudasim (the simulated GPU). --keep leaves the temp directory (agent log, images) in place.
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

export async function demo(argv: string[]): Promise<number> {
  let values: { mib?: string; keep?: boolean };
  try { values = parseArgs({ args: argv, options: { mib: { type: 'string' }, keep: { type: 'boolean' }, json: { type: 'boolean' } }, strict: true }).values; } catch (err) {
    throw new PhosError('BAD_ARGS', (err as Error).message, { remedy: 'phos demo --help' });
  }
  const mib = Number(values.mib ?? 256);
  if (!Number.isSafeInteger(mib) || mib < 8) throw new PhosError('BAD_ARGS', `phos demo: --mib must be an integer >= 8, got ${values.mib}`);
  const counter = join(BUILD, 'workloads', 'counter');
  if (!existsSync(counter)) throw new PhosError('NOT_FOUND', `${counter} is not built`, { remedy: 'bash deploy/install.sh' });
  const simDir = simulatedDriverDir();
  const args = ['--mib', String(mib), '--steps', '400', '--step-ms', '20'];
  const env = simDir ? { ...process.env, LD_LIBRARY_PATH: simDir } : process.env;
  const reference = /checksum (\w+)/.exec(execFileSync(counter, [...args, '--reference'], { encoding: 'utf8', env }))![1];
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
    await waitFor('the end of the run', () => /^checksum /m.test(readFileSync(info.logPath, 'utf8')) || stepsIn(info.logPath).some((s) => !s.ok), 120_000);
    const got = /^checksum (\w+)/m.exec(readFileSync(info.logPath, 'utf8'))?.[1];
    const steps = stepsIn(info.logPath);
    const continuous = steps.every((s, i) => s.n === i + 1 && s.ok);
    if (got !== reference || !continuous) {
      throw new PhosError('IMAGE_CORRUPT', `demo: the workload did not continue bit-exact (checksum ${got ?? 'none'}, expected ${reference}; steps continuous: ${continuous})`, { remedy: `see ${info.logPath}` });
    }
    say(`  ok: ${steps.length} steps, every one verified, checksum ${got} equals an uninterrupted run`);
    return 0;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    if (!values.keep) rmSync(dir, { recursive: true, force: true });
  }
}
