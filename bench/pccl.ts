// pccl transport throughput between two network-namespace hosts (test/helpers/hosts.ts) for 1, 2, 4
// and 8 streams, against the same number of raw TCP streams (bench/pccl-raw.c: send/recv only) moving
// the same bytes between the same kind of mappings. Each configuration runs once to warm (first touch
// of fresh mappings costs far more than the copy on a VM) and then RUNS times; the table and
// bench/results/pccl.json hold the medians. Root only (network namespaces).
import { execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { hostsUnavailable, makeHosts, type Host, type Hosts } from '../test/helpers/hosts.ts';

// On the GPU machine this runs bundled (bench/gpu/pack.sh): the bundle names the repository, the bundled
// peer and its result file through the environment.
const ROOT = process.env.PHOS_ROOT ?? fileURLToPath(new URL('..', import.meta.url));
const PEER = process.env.PHOS_PCCL_PEER ? [process.env.PHOS_PCCL_PEER] : ['--import', 'tsx', join(ROOT, 'native/pccl/test/transport-peer.ts')];
const RESULT = process.env.PHOS_BENCH_RESULT ?? join(ROOT, 'bench/results/pccl.json');
const MiB = 1 << 20;
// 1 GiB per run: at 8 streams on an H200 host a 256 MiB run took 20 ms, short enough that a run's fixed
// costs (thread start, the last chunk's verify-and-ack round trip) moved the ratio by ±10 % between calls.
const SIZE = Number(process.env.PHOS_PCCL_BENCH_MIB ?? 1024) * MiB;
const CHUNK = 2 * MiB;
const RUNS = Number(process.env.PHOS_PCCL_BENCH_RUNS ?? 5);
const STREAMS = [1, 2, 4, 8];

interface Measured {
  runsMs: number[];
  medianMs: number;
  mbPerSec: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function measured(runsMs: number[]): Measured {
  const m = median(runsMs);
  return { runsMs: runsMs.map((x) => Math.round(x * 10) / 10), medianMs: Math.round(m * 10) / 10, mbPerSec: Math.round(SIZE / (m / 1000) / 1e6) };
}

/** Lines of a child's stdout, and a way to wait for the first that matches. */
function lines(child: ChildProcess): { all: string[]; next: (pred: (l: string) => boolean) => Promise<string>; exited: Promise<number | null> } {
  const all: string[] = [];
  const waiters: { pred: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  createInterface({ input: child.stdout! }).on('line', (l) => {
    all.push(l);
    for (const w of waiters.splice(0)) {
      if (w.pred(l)) w.resolve(l);
      else waiters.push(w);
    }
  });
  const next = (pred: (l: string) => boolean) =>
    new Promise<string>((resolve, reject) => {
      const found = all.find(pred);
      if (found !== undefined) return resolve(found);
      waiters.push({ pred, resolve });
      void exited.then((code) => setTimeout(() => reject(new Error(`peer exited (${code}): ${all.join('\n')}`)), 200));
    });
  return { all, next, exited };
}

function shmFile(path: string, fill: boolean): void {
  const fd = openSync(path, 'w+');
  try {
    ftruncateSync(fd, SIZE);
    const block = fill ? randomBytes(16 * MiB) : Buffer.alloc(16 * MiB);
    for (let o = 0; o < SIZE; o += block.length) writeSync(fd, block, 0, block.length, o);
  } finally {
    closeSync(fd);
  }
}

async function runPccl(hosts: Hosts, rx: Host, tx: Host, streams: number, src: string, dst: string): Promise<Measured> {
  const node = (h: Host, args: string[]) => hosts.spawn(h, process.execPath, [...PEER, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const r = lines(node(rx, ['recv', rx.addr, String(streams), dst, String(SIZE)]));
  const port = (JSON.parse(await r.next((l) => l.includes('"listening"'))) as { port: number }).port;
  const s = lines(node(tx, ['send', rx.addr, String(port), String(streams), src, String(SIZE), String(CHUNK), String(RUNS + 1)]));
  await s.next((l) => l.includes('"closed"') || l.includes('"failed"'));
  await Promise.all([s.exited, r.exited]);
  const runs = s.all.map((l) => JSON.parse(l) as { type: string; ms: number; bytes: number }).filter((x) => x.type === 'run');
  if (runs.length !== RUNS + 1 || runs.some((x) => x.bytes !== SIZE)) throw new Error(`pccl sender: ${s.all.join('\n')}`);
  return measured(runs.slice(1).map((x) => x.ms));
}

async function runRaw(hosts: Hosts, rx: Host, tx: Host, streams: number, bin: string, src: string, dst: string): Promise<Measured> {
  const spawnRaw = (h: Host, args: string[]) => hosts.spawn(h, bin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const r = lines(spawnRaw(rx, ['recv', '0', String(streams), dst, String(SIZE)]));
  const port = (await r.next((l) => l.startsWith('port '))).split(' ')[1]!;
  const s = lines(spawnRaw(tx, ['send', rx.addr, port, String(streams), src, String(SIZE), String(RUNS + 1)]));
  const code = await s.exited;
  await r.exited;
  const runs = s.all.filter((l) => l.startsWith('run ')).map((l) => Number(l.split(' ')[1]));
  if (code !== 0 || runs.length !== RUNS + 1) throw new Error(`raw sender exited ${code}: ${s.all.join('\n')}`);
  return measured(runs.slice(1));
}

export async function main(_args: string[]): Promise<void> {
  const why = hostsUnavailable();
  if (why) {
    console.error(`bench pccl: ${why}`);
    process.exitCode = 1;
    return;
  }
  const work = mkdtempSync(join(tmpdir(), 'bench-pccl-'));
  const bin = join(work, 'pccl-raw');
  execFileSync('cc', ['-O2', '-Wall', '-Werror', '-pthread', '-o', bin, join(ROOT, 'bench/pccl-raw.c')], { stdio: 'inherit' });
  const src = `/dev/shm/bench-pccl-${process.pid}-src`;
  const dst = `/dev/shm/bench-pccl-${process.pid}-dst`;
  shmFile(src, true);
  shmFile(dst, false);
  const hosts = makeHosts(2);
  const [rx, tx] = hosts.hosts as [Host, Host];
  const results: { streams: number; pccl: Measured; raw: Measured; ratio: number }[] = [];
  try {
    for (const streams of STREAMS) {
      const raw = await runRaw(hosts, rx, tx, streams, bin, src, dst);
      const pcclRes = await runPccl(hosts, rx, tx, streams, src, dst);
      const ratio = Math.round((pcclRes.mbPerSec / raw.mbPerSec) * 1000) / 1000;
      results.push({ streams, pccl: pcclRes, raw, ratio });
      console.error(`streams ${streams}: pccl ${pcclRes.mbPerSec} MB/s, raw ${raw.mbPerSec} MB/s`);
    }
  } finally {
    hosts.destroy();
    rmSync(src, { force: true });
    rmSync(dst, { force: true });
    rmSync(work, { recursive: true, force: true });
  }
  const machine = {
    kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(),
    nproc: Number(execFileSync('nproc', { encoding: 'utf8' }).trim()),
    cpu: cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round(Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / MiB),
    node: process.version,
  };
  const rows = [
    '| streams | pccl MB/s | raw TCP MB/s | pccl / raw |',
    '|---:|---:|---:|---:|',
    ...results.map((r) => `| ${r.streams} | ${r.pccl.mbPerSec} | ${r.raw.mbPerSec} | ${(r.ratio * 100).toFixed(1)}% |`),
  ];
  console.log(`pccl transport vs raw TCP, ${SIZE / MiB} MiB in ${CHUNK / MiB} MiB chunks, two network namespaces over a veth bridge; median of ${RUNS} runs`);
  console.log(`machine: kernel ${machine.kernel}, ${machine.nproc} CPUs (${machine.cpu}), ${machine.memGiB} GiB, node ${machine.node}`);
  console.log(rows.join('\n'));
  mkdirSync(dirname(RESULT), { recursive: true });
  const out = { bench: 'pccl', date: new Date().toISOString(), machine, bytes: SIZE, chunkBytes: CHUNK, runs: RUNS, warmupRuns: 1, unit: 'MB/s (1e6 bytes/s), median', results };
  writeFileSync(RESULT, JSON.stringify(out, null, 2) + '\n');
}
