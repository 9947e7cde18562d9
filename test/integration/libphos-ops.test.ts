// libphos operations on cudasim, driven by a test agent that speaks the real protocol (proto codec, pccl
// agent socket with fd passing, the pccl keeper): hash rounds, snapshot into keeper spare memory, freeze
// (app stops) and thaw at the same addresses (app continues bit-exact), the lazy case where chunks arrive
// after the thaw through the on-demand gate, and the keeper cycle with a CRIU dump and restore in between.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeFrame, encodeFrame, OPS, type Frame, type Op } from '../../proto/src/index.ts';
import * as pccl from '../../native/pccl/pccl.ts';
import { ADDON_PATH, type AgentEvent } from '../../native/pccl/pccl.ts';
import { chunkHash } from '../../native/pccl/test/support.ts';
import { criuDump, criuRestore, launch, type Launched } from '../../services/node-agent/src/index.ts';
import { CKPT_CTL, CUDASIM_DIR, LIBPHOS, cudasimEnv } from '../helpers/paths.ts';
import { assertContinuous, readWorkloadLog, referenceChecksum, waitForLog, workloadPath, WORKLOADS, type Workload } from '../helpers/workload.ts';

const CHUNK = 2 << 20;
/** PHOS_LIBPHOS overrides the libphos under test (e.g. an engineer's own build dir). */
const LIB = process.env.PHOS_LIBPHOS ?? LIBPHOS;
const ARGS: Record<Workload, string[]> = {
  counter: ['--mib', '8', '--steps', '40', '--step-ms', '20', '--verify-every', '5'],
  streams: ['--steps', '40', '--step-ms', '20'],
  'vmm-grow': ['--steps', '40', '--step-ms', '20', '--grow-every', '3'],
  'ptr-chase': ['--steps', '40', '--step-ms', '20'],
};

interface Rep { ok: boolean; err?: { code: string; message: string }; [k: string]: unknown }
interface Kept { id: number; va: number; size: number; kind: 'slab' | 'app'; keeper: number }
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One app's agent: hello/welcome, keeper imports of alloc fds, req/rep by id, events. */
class TestAgent {
  conn = 0;
  hellos: Frame<'hello'>[] = [];
  allocs = new Map<number, Kept>();
  events: Frame<'event'>[] = [];
  closedConns = new Set<number>();
  /** The connection of a hello {resume: true} that is still open (thaw goes there). */
  liveResume: number | null = null;
  private nextId = 1;
  private waiting = new Map<number, (r: Rep) => void>();
  private chain: Promise<void> = Promise.resolve();
  private listeners: (() => void)[] = [];

  constructor(readonly sock: string) {}

  listen(): void {
    this.closedConns.clear(); // a new server numbers its connections afresh
    this.liveResume = null;
    pccl.agentListen(this.sock, (e) => {
      this.chain = this.chain.then(() => this.onEvent(e)).catch((err: unknown) => { console.error('test agent:', err); });
    });
  }

  private async onEvent(e: AgentEvent): Promise<void> {
    if (e.type === 'connect') this.conn = e.conn;
    else if (e.type === 'closed') {
      this.closedConns.add(e.conn);
      if (this.liveResume === e.conn) this.liveResume = null;
    }
    else {
      const f = decodeFrame(e.bytes);
      if (f.t === 'hello') {
        for (const fd of e.fds) pccl.closeFd(fd); // the staging ring is not used here
        this.hellos.push(f);
        if (f.resume) this.liveResume = e.conn;
        pccl.agentSend(e.conn, Buffer.from(encodeFrame({ v: f.v, t: 'welcome', node: 'test' })));
      } else if (f.t === 'alloc') {
        const fd = e.fds[0]!;
        const k = await pccl.keeperImport(fd, f.size);
        pccl.closeFd(fd);
        this.allocs.set(f.id, { id: f.id, va: f.va, size: f.size, kind: f.kind ?? 'slab', keeper: k.id });
      } else if (f.t === 'free') {
        const k = this.allocs.get(f.id);
        this.allocs.delete(f.id);
        if (k) await pccl.keeperRelease(k.keeper);
      } else if (f.t === 'rep') {
        this.waiting.get(f.id)?.(f as unknown as Rep);
        this.waiting.delete(f.id);
      } else if (f.t === 'event') {
        this.events.push(f);
      }
      for (const fd of f.t === 'hello' || f.t === 'alloc' ? [] : e.fds) pccl.closeFd(fd);
    }
    for (const l of this.listeners.splice(0)) l();
  }

  /** Waits until the agent's state satisfies `pred` (checked after every event). */
  async until(pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`test agent: timed out waiting for ${what}`);
      await new Promise<void>((r) => { this.listeners.push(r); setTimeout(r, 20); });
    }
    await this.chain;
  }

  async req(op: Op, fields: { allocIds?: number[]; pending?: number[]; chunks?: number[] } = {}, fds: number[] = []): Promise<Rep> {
    expect(OPS).toContain(op);
    const id = this.nextId++;
    const rep = new Promise<Rep>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no reply to ${op} within 20 s`)), 20_000);
      this.waiting.set(id, (r) => { clearTimeout(t); resolve(r); });
    });
    pccl.agentSend(this.conn, Buffer.from(encodeFrame({ v: 1, t: 'req', id, op, ...fields })), fds);
    return rep;
  }

  slabs(): Kept[] { return [...this.allocs.values()].filter((a) => a.kind === 'slab'); }
  chunksOf(a: Kept): number[] {
    const base = this.hellos[0]!.vaBase;
    return Array.from({ length: a.size / CHUNK }, (_, i) => (a.va - base) / CHUNK + i);
  }

  /** Thaw with fds the keeper exports, at most 16 per frame; pending chunks go with the first frame. */
  async thaw(pending: number[]): Promise<Rep[]> {
    const all = [...this.allocs.values()];
    const reps: Rep[] = [];
    for (let i = 0; i < all.length || i === 0; i += 16) {
      const part = all.slice(i, i + 16);
      const fds = await Promise.all(part.map((a) => pccl.keeperExportFd(a.keeper)));
      reps.push(await this.req('thaw', { allocIds: part.map((a) => a.id), ...(i === 0 ? { pending } : {}) }, fds));
      for (const fd of fds) pccl.closeFd(fd);
    }
    return reps;
  }

  /** Keeper-side chunk hashes of the given allocations (written to files under dir). */
  async hashes(list: Kept[], dir: string, tag: string, src?: (a: Kept) => number): Promise<string[]> {
    mkdirSync(dir, { recursive: true });
    const out: string[] = [];
    for (const a of list) {
      const items = Array.from({ length: a.size / CHUNK }, (_, i) => ({ offset: i * CHUNK, length: CHUNK, path: join(dir, `${tag}-${a.id}-${i}`) }));
      out.push(...(await pccl.writeChunks({ src: src ? src(a) : a.keeper, items })).hashes);
    }
    return out;
  }

  close(): void { pccl.agentServerClose(); }
}

interface CtlResult { action: string; ok: boolean; error: string }
function ckptCtl(action: string, pid: number): Promise<CtlResult[]> {
  return new Promise((resolve) => {
    execFile(CKPT_CTL, ['--timeout-ms', '10000', action, String(pid)], { env: cudasimEnv(), encoding: 'utf8' }, (_e, stdout) => {
      resolve(stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as CtlResult));
    });
  });
}

let root: string;
const apps: Launched[] = [];
let agent: TestAgent | undefined;

beforeAll(() => {
  expect(existsSync(ADDON_PATH), `pccl addon missing at ${ADDON_PATH}: run bash deploy/install.sh`).toBe(true);
  expect(existsSync(LIB), `libphos missing at ${LIB}: run bash deploy/install.sh`).toBe(true);
  process.env.PHOS_LIBCUDA = join(CUDASIM_DIR, 'libcuda.so.1');
  root = mkdtempSync(join(tmpdir(), 'phos-ops-'));
});
afterEach(() => {
  for (const a of apps.splice(0)) { try { process.kill(a.pid, 'SIGKILL'); } catch { /* gone */ } }
  agent?.close();
  agent = undefined;
});
afterAll(() => { if (root && !process.env.PHOS_KEEP_TMP) rmSync(root, { recursive: true, force: true }); });

function start(name: Workload, dir: string, extraEnv: Record<string, string> = {}, sock = join(dir, 'agent.sock')): { app: Launched; log: string; agent: TestAgent } {
  const a = new TestAgent(sock);
  a.listen();
  agent = a;
  const log = join(dir, 'app.log');
  const env = cudasimEnv({ LD_PRELOAD: LIB, PHOS_AGENT_SOCK: a.sock, PHOS_STAGING_MIB: '2', PHOS_LOG: 'info', PHOS_JOB: name, ...extraEnv });
  const app = launch({ argv: [workloadPath(name), ...ARGS[name]], env, logPath: log });
  apps.push(app);
  return { app, log, agent: a };
}

const stepsNow = (log: string): number => readWorkloadLog(log).steps.length;

/** Freeze, check the app stops, zero some chunks in the keeper (saved to files first), thaw with them pending. */
async function freezeAndThawLazily(a: TestAgent, log: string, dir: string, between?: () => Promise<void>, firstWaitAlone = false): Promise<{ pending: number[]; afterFirst: number[] }> {
  const slabs = a.slabs();
  const conn = a.conn;
  const r = await a.req('freeze');
  expect(r, JSON.stringify(r)).toMatchObject({ ok: true });
  expect(typeof r.ms).toBe('number');
  await a.until(() => a.closedConns.has(conn), 'libphos to close its socket after the freeze');
  const frozenAt = stepsNow(log);
  await sleep(300);
  expect(stepsNow(log), 'no step may complete while frozen').toBe(frozenAt);

  // Save every slab chunk, then overwrite it with zeros in the keeper: after the thaw those chunks are
  // pending and only the gate frames below put the right bytes back.
  const saved = await a.hashes(slabs, join(dir, 'saved'), 'c');
  const zero = join(dir, 'zero');
  writeFileSync(zero, Buffer.alloc(CHUNK));
  const zh = chunkHash(Buffer.alloc(CHUNK));
  for (const s of slabs) {
    await pccl.readChunks({ dst: s.keeper, items: Array.from({ length: s.size / CHUNK }, (_, i) => ({ offset: i * CHUNK, length: CHUNK, path: zero, hash: zh })) });
  }
  const pending = slabs.flatMap((s) => a.chunksOf(s));
  if (between) await between();

  await a.until(() => a.liveResume !== null, 'hello {resume: true}');
  a.conn = a.liveResume!;
  const waits = () => a.events.filter((e) => e.kind === 'gate-wait');
  const waitsBefore = waits().length;
  const reps = await a.thaw(pending);
  expect(reps.at(-1), JSON.stringify(reps)).toMatchObject({ ok: true, remaining: 0 });

  // Fill once the app waits, each set in reverse order (the gate must not depend on the order). With
  // firstWaitAlone, first only the chunks its first wait names, then the rest once it waits again (or 3 s
  // passed): a wait that widens to "all" then names exactly the chunks still pending, whichever operation
  // the freeze happened to leave next. (Not for apps that may end without touching every chunk: vmm-grow.)
  await a.until(() => waits().length > waitsBefore, 'the app to wait at the gate');
  const first = new Set(firstWaitAlone ? waits()[waitsBefore]!.chunks ?? [] : []);
  const where = slabs.flatMap((s) => Array.from({ length: s.size / CHUNK }, (_, i) => ({ s, i })));
  let k = 0;
  const fill = async (chunks: number[]) => {
    for (const c of [...chunks].reverse()) {
      const { s, i } = where[pending.indexOf(c)]!;
      await pccl.readChunks({ dst: s.keeper, items: [{ offset: i * CHUNK, length: CHUNK, path: join(dir, 'saved', `c-${s.id}-${i}`), hash: saved[pending.indexOf(c)]! }] });
      const g = await a.req('gate', { chunks: [c] });
      expect(g).toMatchObject({ ok: true });
      k++;
      expect(g.pending).toBe(pending.length - k);
    }
  };
  await fill(pending.filter((c) => first.has(c)));
  const afterFirst = pending.filter((c) => !first.has(c));
  if (firstWaitAlone && afterFirst.length > 0) await a.until(() => waits().length > waitsBefore + 1, 'a second wait', 3000).catch(() => undefined);
  await fill(afterFirst);
  return { pending, afterFirst };
}

describe('libphos operations (cudasim, test agent)', () => {
  it('connects to an agent on an abstract socket (PHOS_AGENT_SOCK=@name)', async () => {
    const dir = join(root, 'abstract');
    mkdirSync(dir);
    const sock = `@phos-ops-${process.pid}-${Date.now()}`;
    const { app, agent: a } = start('counter', dir, {}, sock);
    await a.until(() => a.hellos.length === 1 && a.slabs().length > 0, 'hello and a slab over the abstract socket');
    expect(a.hellos[0]).toMatchObject({ pid: app.pid, job: 'counter', stagingBytes: 2 << 20 });
    expect(existsSync(join(process.cwd(), sock))).toBe(false);
    expect(await a.req('status')).toMatchObject({ ok: true });
  }, 60_000);

  it.each(WORKLOADS)('%s: hash rounds, snapshot, freeze/thaw bit-exact, lazy thaw through the gate', async (name) => {
    const dir = join(root, name);
    mkdirSync(dir);
    const expected = referenceChecksum(name, ARGS[name]);
    const { app, log, agent: a } = start(name, dir);
    await waitForLog(log, (l) => l.steps.length >= 3);
    await a.until(() => a.hellos.length === 1 && a.slabs().length > 0, 'hello and a slab');
    expect(a.hellos[0]!.pid).toBe(app.pid);

    // Hash rounds: the first reports every present chunk (new), a later one what the steps changed.
    const h1 = await a.req('hash-round');
    expect(h1, JSON.stringify(h1)).toMatchObject({ ok: true });
    expect((h1.changed as number[]).length).toBeGreaterThan(0);
    await sleep(100);
    const h2 = await a.req('hash-round');
    expect((h2.changed as number[]).length).toBeGreaterThan(0);
    if (name === 'ptr-chase') expect(h2.pointerChunks as number).toBeGreaterThan(0);
    const st = await a.req('status');
    expect(st).toMatchObject({ ok: true, armed: false });

    // Snapshot into keeper spare memory: every allocation copied, the app keeps running.
    const all = [...a.allocs.values()].slice(0, 16);
    const spares = await Promise.all(all.map((x) => pccl.keeperSpare(x.size)));
    const sfds = await Promise.all(spares.map((s) => pccl.keeperExportFd(s.id)));
    const snap = await a.req('snapshot', { allocIds: all.map((x) => x.id) }, sfds);
    for (const fd of sfds) pccl.closeFd(fd);
    expect(snap, JSON.stringify(snap)).toMatchObject({ ok: true, bytes: all.reduce((n, x) => n + x.size, 0) });
    const afterSnap = stepsNow(log);
    await waitForLog(log, (l) => l.steps.length > afterSnap + 1);

    // Freeze with spare memory: the copy is the state the app froze in, byte for byte.
    const slabs = a.slabs();
    const spares2 = await Promise.all(slabs.map((x) => pccl.keeperSpare(x.size)));
    const fds2 = await Promise.all(spares2.map((s) => pccl.keeperExportFd(s.id)));
    const conn = a.conn;
    const fr = await a.req('freeze', { allocIds: slabs.map((x) => x.id) }, fds2);
    for (const fd of fds2) pccl.closeFd(fd);
    expect(fr, JSON.stringify(fr)).toMatchObject({ ok: true });
    await a.until(() => a.closedConns.has(conn), 'socket closed after freeze');
    const frozenAt = stepsNow(log);
    const live = await a.hashes(slabs, join(dir, 'live'), 'l');
    const copy = await a.hashes(slabs, join(dir, 'spare'), 's', (x) => spares2[slabs.indexOf(x)]!.id);
    expect(copy).toEqual(live);
    await sleep(300);
    expect(stepsNow(log), 'no step may complete while frozen').toBe(frozenAt);
    for (const s of [...spares, ...spares2]) await pccl.keeperRelease(s.id);

    // Thaw with the keeper's fds: same addresses, nothing pending; the app continues.
    await a.until(() => a.liveResume !== null, 'hello {resume: true}');
    a.conn = a.liveResume!;
    const th = await a.thaw([]);
    expect(th.at(-1), JSON.stringify(th)).toMatchObject({ ok: true, remaining: 0 });
    await waitForLog(log, (l) => l.steps.length > frozenAt + 2);

    // Lazy: chunks zeroed in the keeper and pending after the thaw; the app must wait for them.
    const { pending, afterFirst } = await freezeAndThawLazily(a, log, dir, undefined, name === 'ptr-chase');
    expect(a.hellos.at(-1)).toMatchObject({ resume: true, pid: app.pid });
    const waited = a.events.filter((e) => e.kind === 'gate-wait');
    expect(waited.length, 'a launch or copy waited at the on-demand gate').toBeGreaterThan(0);
    expect(waited.some((e) => (e.chunks ?? []).some((c) => pending.includes(c)))).toBe(true);
    // ptr-chase reaches memory through device-resident pointers: hash rounds flagged its table chunk as
    // holding pointers, so its launches widened to "all" and waited for every chunk pending then: all of
    // them, or all but those of the first wait (the freeze may leave a copy of one chunk next).
    const same = (x: number[], y: number[]) => x.length === y.length && x.every((c) => y.includes(c));
    if (name === 'ptr-chase') expect(waited.some((e) => same(e.chunks ?? [], pending) || (afterFirst.length > 0 && same(e.chunks ?? [], afterFirst))), JSON.stringify(waited.map((e) => e.chunks?.length))).toBe(true);

    const final = await waitForLog(log, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 60_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
    expect(await app.exited).toBe(0);
  }, 120_000);

  it.each(WORKLOADS)('%s: freeze, driver checkpoint + CRIU dump, restore, reconnect with resume, lazy thaw -> bit-exact', async (name) => {
    const dir = join(root, `criu-${name}`);
    mkdirSync(dir);
    const expected = referenceChecksum(name, ARGS[name]);
    const { app, log, agent: a } = start(name, dir);
    await waitForLog(log, (l) => l.steps.length >= 3);
    await a.until(() => a.hellos.length === 1 && a.slabs().length > 0, 'hello and a slab');
    await a.req('hash-round');

    let restored = 0;
    await freezeAndThawLazily(a, log, dir, async () => {
      // The agent stops accepting while the process is dumped: libphos must hold no connected socket.
      pccl.agentServerClose();
      await sleep(200); // its closed events are handled before a new server numbers connections again
      const suspend = await ckptCtl('suspend', app.pid);
      expect(suspend.map((r) => [r.action, r.ok, r.error])).toEqual([['lock', true, ''], ['checkpoint', true, '']]);
      const img = join(dir, 'img');
      mkdirSync(img);
      await criuDump({ pid: app.pid, dir: img });
      expect(await app.exited).toBe(137);
      const { pid } = await criuRestore({ dir: img });
      restored = pid;
      apps.push({ ...app, pid });
      const resume = await ckptCtl('resume', pid);
      expect(resume.map((r) => [r.action, r.ok, r.error])).toEqual([['restore', true, ''], ['unlock', true, '']]);
      a.listen();
    });
    expect(restored).toBe(app.pid);
    expect(a.hellos.at(-1)).toMatchObject({ resume: true, pid: app.pid });
    const final = await waitForLog(log, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 60_000);
    assertContinuous(final);
    expect(final.checksum).toBe(expected);
  }, 120_000);
});
