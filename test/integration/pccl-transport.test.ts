// pccl transport: chunks move over parallel TCP streams from one shared-memory mapping into another,
// bit-exact, each verified by libphos's chunk hash on arrival; a corrupted chunk is re-sent, a broken
// stream resumes, a vanished peer is a named error, the bandwidth cap holds; and the same between two
// network-namespace hosts (root only).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import * as pccl from '../../native/pccl/pccl.ts';
import { ADDON_PATH, type TransportItem, type TransportReceiverEvent, type TransportSenderEvent } from '../../native/pccl/pccl.ts';
import { chunkHash } from '../../native/pccl/test/support.ts';
import { hostsUnavailable, makeHosts, type Hosts } from '../helpers/hosts.ts';
import { ROOT } from '../helpers/paths.ts';
import { rejection } from '../helpers/expect.ts';

const MiB = 1 << 20;
const SIZE = 256 * MiB;
const CHUNK = 2 * MiB;
const ALLOC = 7;
const PEER = `${ROOT}native/pccl/test/transport-peer.ts`;
const files: string[] = [];
let srcFile: string;
let dstFile: string;
let src: number;
let dst: number;

/** A file in /dev/shm (tmpfs: the same shmem as libphos's staging memfd) of SIZE bytes, mapped. */
function shmFile(tag: string, fill: boolean): string {
  const path = `/dev/shm/pccl-transport-${process.pid}-${tag}`;
  files.push(path);
  const fd = openSync(path, 'w+');
  try {
    ftruncateSync(fd, SIZE);
    if (fill) {
      const block = randomBytes(16 * MiB);
      for (let o = 0; o < SIZE; o += block.length) {
        block.writeUInt32LE(o, 0); // every block differs, so a misplaced chunk cannot pass
        writeSync(fd, block, 0, block.length, o);
      }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

function mapFile(path: string, writable: boolean): number {
  const fd = openSync(path, writable ? 'r+' : 'r');
  try {
    return pccl.mapFd(fd, SIZE, writable);
  } finally {
    closeSync(fd);
  }
}

function itemsFor(bytes: number, chunk = CHUNK): TransportItem[] {
  const items: TransportItem[] = [];
  for (let o = 0; o < bytes; o += chunk) items.push({ src, offset: o, length: Math.min(chunk, bytes - o), alloc: ALLOC, chunkOffset: o });
  return items;
}

/** Overwrites the start of every chunk of dst in [0, bytes), so that a chunk that never arrived shows. */
function poison(bytes: number): void {
  const junk = Buffer.alloc(64, 0xee);
  for (let o = 0; o < bytes; o += CHUNK) pccl.mapWrite(dst, o, junk);
}

function digest(id: number, bytes: number): string {
  const h = createHash('sha256');
  for (let o = 0; o < bytes; o += 32 * MiB) h.update(pccl.mapRead(id, o, Math.min(32 * MiB, bytes - o)));
  return h.digest('hex');
}

/** A receiver on loopback writing alloc ALLOC into dst, recording its events. */
function receiver(streams: number, opts: { timeoutMs?: number } = {}) {
  const events: TransportReceiverEvent[] = [];
  let ended: (e: TransportReceiverEvent) => void = () => {};
  const end = new Promise<TransportReceiverEvent>((resolve) => (ended = resolve));
  const rx = pccl.transportListen({ host: '127.0.0.1', streams, ...opts }, (e) => {
    events.push(e);
    if (e.type === 'end') ended(e);
  });
  pccl.transportRegisterDest(rx.id, ALLOC, { dst });
  return { rx, events, end, close: () => pccl.transportReceiverClose(rx.id) };
}

beforeAll(() => {
  expect(existsSync(ADDON_PATH), `pccl addon missing at ${ADDON_PATH}: run bash deploy/install.sh`).toBe(true);
  srcFile = shmFile('src', true);
  dstFile = shmFile('dst', false);
  src = mapFile(srcFile, false);
  dst = mapFile(dstFile, true);
});

afterAll(() => {
  if (src) pccl.unmap(src);
  if (dst) pccl.unmap(dst);
  for (const f of files) rmSync(f, { force: true });
});

// Both ways of hashing (native/pccl/README.md): a stream's helper thread, or in line on the socket thread
// (what the automatic choice picks on a machine with few cores).
describe.each([
  { hashing: 'on helper threads', env: '1' },
  { hashing: 'in line', env: '0' },
])('pccl transport on loopback, hashing $hashing', ({ env }) => {
  beforeAll(() => {
    process.env.PHOS_PCCL_HASH_THREADS = env;
  });
  afterAll(() => {
    delete process.env.PHOS_PCCL_HASH_THREADS;
  });

  it('moves 256 MiB over 4 streams bit-exact, both sides reporting the same totals at the end marker', async () => {
    const r = receiver(4);
    const senderEvents: TransportSenderEvent[] = [];
    try {
      const tx = await pccl.transportConnect({ host: '127.0.0.1', port: r.rx.port, streams: 4, onEvent: (e) => senderEvents.push(e) });
      expect(tx.session).toMatch(/^[0-9a-f]{16}$/);
      const res = await pccl.transportSend(tx.id, itemsFor(SIZE));
      expect(res.bytes).toBe(SIZE);
      expect(res.perStream.reduce((n, s) => n + s.bytes, 0)).toBe(SIZE);
      expect(res.perStream.filter((s) => s.chunks > 0).length).toBeGreaterThan(1); // spread over the streams
      const closed = await pccl.transportClose(tx.id);
      expect(closed).toMatchObject({ bytes: SIZE, chunks: SIZE / CHUNK, ended: true });
      const end = await r.end;
      expect(end).toMatchObject({ type: 'end', session: tx.session, bytes: SIZE, chunks: SIZE / CHUNK, corrupt: 0 });
      expect(digest(dst, SIZE)).toBe(digest(src, SIZE));
      // The receiver's per-chunk records carry the hash it verified: libphos's chunk hash of the bytes.
      const chunks = r.events.filter((e) => e.type === 'chunk');
      expect(chunks.length).toBe(SIZE / CHUNK);
      const first = chunks.find((e) => e.offset === 0)!;
      expect(first.hash).toBe(chunkHash(pccl.mapRead(src, 0, CHUNK)));
      expect(res.hashes[0]).toBe(first.hash);
      expect(senderEvents).toEqual([]);
    } finally {
      r.close();
    }
  });

  it('detects a chunk corrupted on the wire, reports IMAGE_CORRUPT naming alloc and offset, and re-sends it', async () => {
    const bytes = 32 * MiB;
    poison(bytes);
    const r = receiver(2);
    const senderEvents: TransportSenderEvent[] = [];
    try {
      process.env.PHOS_FAULT = 'transport-flip-byte';
      const tx = await pccl.transportConnect({ host: '127.0.0.1', port: r.rx.port, streams: 2, onEvent: (e) => senderEvents.push(e) }).finally(() => {
        delete process.env.PHOS_FAULT;
      });
      const res = await pccl.transportSend(tx.id, itemsFor(bytes));
      await pccl.transportClose(tx.id);
      await r.end;
      const corrupt = r.events.filter((e) => e.type === 'corrupt');
      expect(corrupt.length).toBe(1);
      const c = corrupt[0]!;
      if (c.type !== 'corrupt') throw new Error('unreachable');
      expect(c.error.code).toBe('IMAGE_CORRUPT');
      expect(c.error.message).toContain(`alloc ${ALLOC}`);
      expect(c.error.message).toContain(`offset ${c.offset}`);
      expect(c.error.details).toMatchObject({ alloc: ALLOC, offset: c.offset });
      expect(senderEvents).toContainEqual(expect.objectContaining({ type: 'resend', reason: 'corrupt', alloc: ALLOC, offset: c.offset }));
      expect(res.perStream.reduce((n, s) => n + (s.resent ?? 0), 0)).toBe(1);
      expect(res.bytes).toBe(bytes);
      expect(digest(dst, bytes)).toBe(digest(src, bytes));
    } finally {
      r.close();
    }
  });

  it('resumes a stream cut mid-chunk and completes bit-exact, never reporting the half chunk', async () => {
    const bytes = 64 * MiB;
    poison(bytes);
    const r = receiver(4);
    const senderEvents: TransportSenderEvent[] = [];
    try {
      process.env.PHOS_FAULT = 'transport-break-stream';
      const tx = await pccl.transportConnect({ host: '127.0.0.1', port: r.rx.port, streams: 4, onEvent: (e) => senderEvents.push(e) }).finally(() => {
        delete process.env.PHOS_FAULT;
      });
      const res = await pccl.transportSend(tx.id, itemsFor(bytes));
      const closed = await pccl.transportClose(tx.id);
      await r.end;
      expect(senderEvents).toContainEqual(expect.objectContaining({ type: 'stream-broken', stream: 3, reason: 'fault transport-break-stream' }));
      expect(senderEvents).toContainEqual(expect.objectContaining({ type: 'stream-resumed', stream: 3 }));
      expect(senderEvents).toContainEqual(expect.objectContaining({ type: 'resend', reason: 'stream-broken' }));
      expect(r.events).toContainEqual(expect.objectContaining({ type: 'stream-closed', stream: 3 }));
      expect(r.events).toContainEqual(expect.objectContaining({ type: 'stream', stream: 3, reconnect: true }));
      expect(closed.perStream[3]!.reconnects).toBe(1);
      expect(res.bytes).toBe(bytes);
      // Every chunk reported once, except those whose ack was lost with the connection (reported again).
      const offsets = new Set(r.events.flatMap((e) => (e.type === 'chunk' ? [e.offset] : [])));
      expect(offsets.size).toBe(bytes / CHUNK);
      expect(digest(dst, bytes)).toBe(digest(src, bytes));
    } finally {
      r.close();
    }
  });

  it('fails with AGENT_UNAVAILABLE when the receiver is gone for good, after bounded reconnects', async () => {
    const r = receiver(2);
    const senderEvents: TransportSenderEvent[] = [];
    const tx = await pccl.transportConnect({
      host: '127.0.0.1',
      port: r.rx.port,
      streams: 2,
      bandwidthBytesPerSec: 20e6, // slow enough that the receiver goes away mid-transfer
      timeoutMs: 2000,
      reconnects: 3,
      onEvent: (e) => senderEvents.push(e),
    });
    const sending = pccl.transportSend(tx.id, itemsFor(64 * MiB));
    await new Promise((res) => setTimeout(res, 500));
    const t0 = Date.now();
    r.close();
    const err = await rejection(sending);
    expect(err.code).toBe('AGENT_UNAVAILABLE');
    expect(err.message).toContain('every stream');
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(senderEvents.filter((e) => e.type === 'stream-dead').length).toBe(2);
    expect((await rejection(pccl.transportSend(tx.id, itemsFor(CHUNK)))).code).toBe('AGENT_UNAVAILABLE');
    const closed = await pccl.transportClose(tx.id);
    expect(closed.bytes).toBeLessThan(64 * MiB);
  });

  it('rejects a send for an alloc the receiver has no destination for with NOT_FOUND; the stream goes on', async () => {
    const r = receiver(1);
    try {
      const senderEvents: TransportSenderEvent[] = [];
      const tx = await pccl.transportConnect({ host: '127.0.0.1', port: r.rx.port, streams: 1, onEvent: (e) => senderEvents.push(e) });
      const err = await rejection(pccl.transportSend(tx.id, [{ src, offset: 0, length: CHUNK, alloc: ALLOC + 1, chunkOffset: 0 }]));
      expect(err.code).toBe('NOT_FOUND');
      expect(err.message).toContain(`alloc ${ALLOC + 1}`);
      // The receiver skipped the refused chunk's bytes and its hash trailer: the same connection still
      // frames the next chunks right (a miscount would read bytes as a header and break the stream).
      poison(4 * CHUNK);
      const ok = await pccl.transportSend(tx.id, itemsFor(4 * CHUNK));
      expect(ok.bytes).toBe(4 * CHUNK);
      expect(digest(dst, 4 * CHUNK)).toBe(digest(src, 4 * CHUNK));
      expect(senderEvents).toEqual([]); // no broken stream, no resend
      expect(r.events.filter((e) => e.type === 'error' || e.type === 'stream-closed').length).toBe(1); // the refusal only
      await pccl.transportClose(tx.id);
    } finally {
      r.close();
    }
  });

  it('refuses to connect to a port nobody listens on with AGENT_UNAVAILABLE', async () => {
    const r = receiver(1);
    const port = r.rx.port;
    r.close();
    const err = await rejection(pccl.transportConnect({ host: '127.0.0.1', port, streams: 1, timeoutMs: 1000 }));
    expect(err.code).toBe('AGENT_UNAVAILABLE');
    expect(err.message).toContain(`127.0.0.1:${port}`);
  });

  it('holds a 50 MB/s cap within 10% over a transfer of more than 2 s, shared by 4 streams', async () => {
    const r = receiver(4);
    try {
      const rate = 50e6;
      const bytes = 120 * MiB;
      const tx = await pccl.transportConnect({ host: '127.0.0.1', port: r.rx.port, streams: 4, bandwidthBytesPerSec: rate });
      const res = await pccl.transportSend(tx.id, itemsFor(bytes));
      const measured = res.bytes / (res.ms / 1000);
      console.log(`bandwidth cap ${rate / 1e6} MB/s: measured ${(measured / 1e6).toFixed(2)} MB/s over ${(res.ms / 1000).toFixed(2)} s`);
      expect(res.ms).toBeGreaterThan(2000);
      expect(Math.abs(measured - rate) / rate).toBeLessThan(0.1);
      // Lifting the cap takes effect at once.
      pccl.transportSetBandwidth(tx.id, null);
      const fast = await pccl.transportSend(tx.id, itemsFor(32 * MiB));
      expect(fast.bytes / (fast.ms / 1000)).toBeGreaterThan(rate * 1.5);
      await pccl.transportClose(tx.id);
    } finally {
      r.close();
    }
  });
});

/** JSON records printed by a transport-peer process, line by line. */
function records(child: ChildProcess): { all: Record<string, unknown>[]; next: (pred: (r: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>> } {
  const all: Record<string, unknown>[] = [];
  const waiters: { pred: (r: Record<string, unknown>) => boolean; resolve: (r: Record<string, unknown>) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    all.push(rec);
    for (const w of waiters.splice(0)) {
      if (w.pred(rec)) w.resolve(rec);
      else waiters.push(w);
    }
  });
  const next = (pred: (r: Record<string, unknown>) => boolean) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const found = all.find(pred);
      if (found) return resolve(found);
      waiters.push({ pred, resolve });
      child.once('exit', (code) => setTimeout(() => reject(new Error(`peer exited (${code}): ${JSON.stringify(all)}`)), 100));
    });
  return { all, next };
}

describe('pccl transport between network-namespace hosts', () => {
  let hosts: Hosts | undefined;
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    hosts?.destroy();
  });

  it('moves 128 MiB from host 2 to host 1 over 4 streams, bit-exact', async (ctx) => {
    const why = hostsUnavailable();
    if (why) return ctx.skip(why);
    hosts = makeHosts(2);
    const [h1, h2] = hosts.hosts as [(typeof hosts.hosts)[0], (typeof hosts.hosts)[0]];
    const bytes = 128 * MiB;
    poison(bytes);
    const rxProc = hosts.spawn(h1, process.execPath, ['--import', 'tsx', PEER, 'recv', h1.addr, '4', dstFile, String(SIZE)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(rxProc);
    const rx = records(rxProc);
    const listening = await rx.next((r) => r.type === 'listening');
    const txProc = hosts.spawn(h2, process.execPath, ['--import', 'tsx', PEER, 'send', h1.addr, String(listening.port), '4', srcFile, String(bytes), String(CHUNK), '1'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(txProc);
    const tx = records(txProc);
    const run = await tx.next((r) => r.type === 'run' || r.type === 'failed');
    expect(run).toMatchObject({ type: 'run', bytes });
    const closed = await tx.next((r) => r.type === 'closed');
    expect(closed).toMatchObject({ bytes, ended: true });
    const end = await rx.next((r) => r.type === 'end');
    expect(end).toMatchObject({ bytes, chunks: bytes / CHUNK, corrupt: 0 });
    const streams = rx.all.filter((r) => r.type === 'stream');
    expect(streams.length).toBe(4);
    expect(String(streams[0]!.peer)).toContain(h2.addr); // the bytes came from the other namespace
    const same = (f: string) => createHash('sha256').update(readFileSync(f).subarray(0, bytes)).digest('hex');
    expect(same(dstFile)).toBe(same(srcFile));
  });
});
