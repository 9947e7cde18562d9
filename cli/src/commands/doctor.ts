// `phos doctor`: checks that this machine can run phos and prints what it found. Each check names the
// fix when it fails; any failed required check makes the exit status 1.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PhosError } from '../../../proto/src/index.ts';
import { CRIU_KDAT_DIR, CRIU_MIN_VERSION, CRIU_THP_PATCH_MARKER, criuBinary, parseCriuVersion } from '../../../common/src/index.ts';
import { formatBytes, renderTable } from '../output.ts';

export const DOCTOR_HELP = `usage: phos doctor [--json]

Checks what phos needs on this machine and prints one row per check:
  criu        CRIU >= 4.1 is installed and 'criu check' passes
  kernel      checkpoint/restore support and the namespaces phos uses
  nats        nats-server is installed (or NATS_URL points at one)
  driver      the CUDA driver (or the simulated one) and its checkpoint API
  gpu N       each GPU with its memory
  memory      host memory available

Exit status: 0 when every required check passes, 1 otherwise (each failure names its fix).
Environment: PHOS_CRIU (criu binary to check), NATS_URL.
`;

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const INSTALL = 'bash deploy/install.sh';

type Status = 'ok' | 'warn' | 'fail';
export interface Check { name: string; status: Status; detail: string; fix?: string }

function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv, timeout = 20_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: env ?? process.env, timeout, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 127) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

async function checkCriu(): Promise<Check> {
  const bin = criuBinary();
  const v = await run(bin, ['--version']);
  const parsed = parseCriuVersion(v.out);
  if (!parsed) return { name: 'criu', status: 'fail', detail: `criu not found (${bin})`, fix: `install CRIU >= ${CRIU_MIN_VERSION.join('.')}: ${INSTALL}` };
  const { version } = parsed;
  if (!parsed.ok) {
    return { name: 'criu', status: 'fail', detail: `criu ${version} found (${bin}); phos needs >= ${CRIU_MIN_VERSION.join('.')} (older CRIU fails on kernels >= 6.13)`, fix: INSTALL };
  }
  if (process.getuid?.() !== 0) return { name: 'criu', status: 'warn', detail: `criu ${version}; 'criu check' needs root, not run` };
  const c = await run(bin, ['check']);
  if (c.code !== 0 || !/Looks good/.test(c.out)) {
    const why = c.out.split('\n').filter((l) => /Error|error|fail/.test(l)).slice(0, 2).join('; ') || c.out.trim().slice(0, 200);
    return { name: 'criu', status: 'fail', detail: `criu ${version}: 'criu check' failed: ${why}`, fix: `run '${bin} check' to see every problem; ${INSTALL} rebuilds CRIU` };
  }
  const image = binaryBytes(bin);
  const cache = kdatCache(image);
  if (!cache) return { name: 'criu', status: 'warn', detail: `criu ${version} (${bin}), criu check: looks good; it re-probes the kernel on every dump and restore (~40 ms of the app's stall each): its cache folder /run is not tmpfs`, fix: `${INSTALL} rebuilds it with the cache in ${CRIU_KDAT_DIR}` };
  if (!image?.includes(CRIU_THP_PATCH_MARKER)) {
    return { name: 'criu', status: 'warn', detail: `criu ${version} (${bin}), criu check: looks good; built without phos's restore patch: a restore faults anonymous memory in 4 KiB pages (a 0.7 GB PyTorch image restored in 0.53 s instead of 0.38 s on an H200 host)`, fix: `${INSTALL} rebuilds it with deploy/criu/restore-thp-fill.patch` };
  }
  return { name: 'criu', status: 'ok', detail: `criu ${version} (${bin}), criu check: looks good, kernel-probe cache in ${cache}, phos's restore patch in` };
}

/** The criu executable's bytes (bin is a path or a name on PATH), or null if it cannot be read. */
function binaryBytes(bin: string): Buffer | null {
  try {
    const path = bin.includes('/') ? bin : (process.env.PATH ?? '').split(':').map((d) => join(d, bin)).find((p) => existsSync(p));
    return path ? readFileSync(path) : null;
  } catch {
    return null;
  }
}

/** Where criu keeps its kernel-probe cache (only on tmpfs): ours (CRIU_KDAT_DIR), /run where tmpfs, else null. */
function kdatCache(image: Buffer | null): string | null {
  const TMPFS_MAGIC = 0x01021994;
  if (image?.includes(`${CRIU_KDAT_DIR}/criu.kdat`)) return CRIU_KDAT_DIR;
  try {
    return statfsSync('/run').type === TMPFS_MAGIC ? '/run' : null;
  } catch {
    return null;
  }
}

function checkKernel(): Check {
  const missing: string[] = [];
  if (!existsSync('/proc/sys/kernel/ns_last_pid')) missing.push('checkpoint/restore (CONFIG_CHECKPOINT_RESTORE)');
  for (const ns of ['pid', 'mnt', 'net', 'user']) if (!existsSync(`/proc/self/ns/${ns}`)) missing.push(`${ns} namespaces`);
  if (missing.length) return { name: 'kernel', status: 'fail', detail: `kernel ${release()} lacks ${missing.join(', ')}`, fix: 'use a kernel built with CONFIG_CHECKPOINT_RESTORE and namespaces' };
  return { name: 'kernel', status: 'ok', detail: `${release()}: checkpoint/restore, pid/mnt/net/user namespaces` };
}

async function checkNats(): Promise<Check> {
  const r = await run('nats-server', ['--version']);
  const m = /v?(\d+\.\d+\.\d+)/.exec(r.out);
  if (r.code === 0 && m) return { name: 'nats', status: 'ok', detail: `nats-server ${m[1]}${process.env.NATS_URL ? `; NATS_URL=${process.env.NATS_URL}` : ''}` };
  if (process.env.NATS_URL) return { name: 'nats', status: 'warn', detail: `nats-server not installed; using NATS_URL=${process.env.NATS_URL}` };
  return { name: 'nats', status: 'fail', detail: 'nats-server not found', fix: INSTALL };
}

interface Probe { ok: boolean; error?: string; detail?: string; library?: string; driverVersion?: number; checkpointApi?: boolean; devices?: { index: number; name: string; uuid: string; totalBytes: number; freeBytes: number }[] }

async function probeDriver(): Promise<{ probe: Probe; simulated: boolean } | Check> {
  const bin = join(ROOT, 'build', 'native', 'tools', 'gpu-probe');
  if (!existsSync(bin)) return { name: 'driver', status: 'fail', detail: 'gpu-probe is not built', fix: INSTALL };
  const parse = (out: string): Probe => { try { return JSON.parse(out) as Probe; } catch { return { ok: false, error: `gpu-probe printed: ${out.slice(0, 200)}` }; } };
  const real = parse((await run(bin, [])).out);
  if (real.ok) return { probe: real, simulated: /cudasim/.test(real.library ?? '') };
  const simDir = join(ROOT, 'build', 'native', 'cudasim');
  if (!existsSync(join(simDir, 'libcuda.so.1'))) {
    return { name: 'driver', status: 'fail', detail: `no NVIDIA driver (${real.error}) and the simulated driver is not built`, fix: INSTALL };
  }
  const sim = parse((await run(bin, [], { ...process.env, LD_LIBRARY_PATH: simDir })).out);
  if (!sim.ok) return { name: 'driver', status: 'fail', detail: `simulated driver failed: ${sim.error} ${sim.detail ?? ''}`.trim(), fix: `rebuild it: ${INSTALL}` };
  return { probe: sim, simulated: true };
}

function driverChecks(r: { probe: Probe; simulated: boolean }): Check[] {
  const { probe, simulated } = r;
  const v = probe.driverVersion ?? 0;
  const ver = `${Math.floor(v / 1000)}.${(v % 1000) / 10}`;
  const what = simulated ? `simulated driver (cudasim, CUDA ${ver} API)` : `NVIDIA driver, CUDA ${ver} API (${probe.library})`;
  const checks: Check[] = [probe.checkpointApi
    ? { name: 'driver', status: 'ok', detail: `${what}; process checkpoint API present` }
    : { name: 'driver', status: 'fail', detail: `${what}; no cuCheckpointProcess* API`, fix: 'install NVIDIA driver >= 570 (checkpoint API)' }];
  const devices = probe.devices ?? [];
  if (devices.length === 0) checks.push({ name: 'gpu', status: 'fail', detail: 'no GPU visible', fix: 'check CUDA_VISIBLE_DEVICES and nvidia-smi' });
  for (const d of devices) {
    checks.push({ name: `gpu ${d.index}`, status: 'ok', detail: `${d.name} ${d.uuid}, ${formatBytes(d.totalBytes)} total, ${formatBytes(d.freeBytes)} free${simulated ? ' (simulated)' : ''}` });
  }
  return checks;
}

function checkMemory(): Check {
  const info = readFileSync('/proc/meminfo', 'utf8');
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(info)?.[1] ?? 0) * 1024;
  return { name: 'memory', status: 'ok', detail: `${formatBytes(kib('MemAvailable'))} available of ${formatBytes(kib('MemTotal'))}` };
}

export async function runChecks(): Promise<Check[]> {
  const [criu, nats, drv] = await Promise.all([checkCriu(), checkNats(), probeDriver()]);
  const driver = 'probe' in drv ? driverChecks(drv) : [drv];
  return [criu, checkKernel(), nats, ...driver, checkMemory()];
}

export async function doctor(argv: string[]): Promise<number> {
  let json = false;
  try {
    json = parseArgs({ args: argv, options: { json: { type: 'boolean' } }, strict: true }).values.json ?? false;
  } catch (err) {
    throw new PhosError('BAD_ARGS', (err as Error).message, { remedy: 'phos doctor --help' });
  }
  const checks = await runChecks();
  const ok = checks.every((c) => c.status !== 'fail');
  if (json) {
    process.stdout.write(JSON.stringify({ ok, checks }) + '\n');
  } else {
    process.stdout.write(renderTable(['CHECK', 'STATUS', 'DETAIL'], checks.map((c) => [c.name, c.status, c.detail])));
    for (const c of checks.filter((x) => x.fix)) process.stdout.write(`fix ${c.name}: ${c.fix}\n`);
    process.stdout.write(ok ? 'phos can run here.\n' : 'phos cannot run here until the failed checks are fixed.\n');
  }
  return ok ? 0 : 1;
}
