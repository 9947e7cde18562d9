// The keeper on cudasim: it imports an allocation a separate CUDA process exported as a POSIX fd, reads
// and writes the same physical bytes (chunk files), copies into keeper-owned spare memory, and hands an
// fd back that the app re-imports after dropping its own mapping, as a thaw does.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pccl from '../../native/pccl/pccl.ts';
import { ADDON_PATH } from '../../native/pccl/pccl.ts';
import { EventQueue, chunkHash, compileC } from '../../native/pccl/test/support.ts';
import { CUDASIM_DIR, cudasimEnv } from '../helpers/paths.ts';
import { rejection } from '../helpers/expect.ts';

const SIZE = 2 << 20; // cudasim's (and the H200's) allocation granularity
const HALF = SIZE / 2;
const M64 = (1n << 64n) - 1n;
let dir: string;
let client: string;

/** What the client writes: word i = i * 0x9E3779B97F4A7C15 ^ 0xA5 (mod 2^64), little-endian. */
function clientPattern(): Buffer {
  const b = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE / 8; i++) b.writeBigUInt64LE(((BigInt(i) * 0x9e3779b97f4a7c15n) & M64) ^ 0xa5n, i * 8);
  return b;
}

function wordSum(b: Buffer): string {
  let s = 0n;
  for (let i = 0; i < b.length; i += 8) s = (s + b.readBigUInt64LE(i)) & M64;
  return s.toString(16).padStart(16, '0');
}

beforeAll(() => {
  expect(existsSync(ADDON_PATH), `pccl addon missing at ${ADDON_PATH}: run bash deploy/install.sh`).toBe(true);
  const lib = join(CUDASIM_DIR, 'libcuda.so.1');
  expect(existsSync(lib), `cudasim missing at ${lib}: run bash deploy/install.sh`).toBe(true);
  process.env.PHOS_LIBCUDA = lib; // read by pccl when it first loads the driver
  dir = mkdtempSync(join(tmpdir(), 'pccl-keeper-'));
  client = compileC('keeper-client', ['-I/usr/local/cuda/include', `-L${CUDASIM_DIR}`, '-lcuda']);
});

afterAll(() => {
  pccl.agentServerClose();
  rmSync(dir, { recursive: true, force: true });
});

describe('pccl keeper (cudasim)', () => {
  it('holds an app allocation by fd, reads and writes its bytes, and hands it back for re-import', async () => {
    const sock = join(dir, 'agent.sock');
    const q = new EventQueue();
    pccl.agentListen(sock, q.push);
    const child = spawn(client, [sock, String(SIZE)], { env: cudasimEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));

    const alloc = await q.next('packet', (e) => e.bytes.toString() === 'alloc');
    expect(alloc.fds).toHaveLength(1);
    const kept = await pccl.keeperImport(alloc.fds[0]!, SIZE);
    pccl.closeFd(alloc.fds[0]!); // the keeper holds its own dup
    expect(kept.size).toBe(SIZE);

    // Device -> chunk files through the keeper's mapping: exactly what the app wrote.
    const a = clientPattern();
    const gpu = join(dir, 'gpu');
    mkdirSync(gpu);
    const items = [0, 1].map((i) => ({ offset: i * HALF, length: HALF, path: join(gpu, `k${i}`) }));
    const written = await pccl.writeChunks({ src: kept.id, items });
    expect(readFileSync(items[0]!.path).equals(a.subarray(0, HALF))).toBe(true);
    expect(readFileSync(items[1]!.path).equals(a.subarray(HALF))).toBe(true);
    expect(written.hashes).toEqual([chunkHash(a.subarray(0, HALF)), chunkHash(a.subarray(HALF))]);

    // A consistent copy into keeper-owned spare memory reads back identical.
    const spare = await pccl.keeperSpare(SIZE - 4096);
    expect(spare.size).toBe(SIZE); // rounded up to the granularity
    await pccl.keeperCopy(spare.id, 0, kept.id, 0, SIZE);
    const fromSpare = await pccl.writeChunks({ src: spare.id, items: items.map((it) => ({ ...it, path: `${it.path}.spare` })) });
    expect(fromSpare.hashes).toEqual(written.hashes);

    // Chunk file -> device: the second half becomes new content, in the app's own physical memory.
    const b = Buffer.alloc(HALF, 0x5c);
    const bPath = join(gpu, 'b');
    writeFileSync(bPath, b);
    await pccl.readChunks({ dst: kept.id, items: [{ offset: HALF, length: HALF, path: bPath, hash: chunkHash(b) }] });
    const expected = Buffer.concat([a.subarray(0, HALF), b]);

    // Hand the memory back; the app drops its own handle and maps the returned fd instead.
    const back = await pccl.keeperExportFd(kept.id);
    pccl.agentSend(alloc.conn, Buffer.from('back'), [back]);
    pccl.closeFd(back);
    await q.next('packet', (e) => e.bytes.toString() === 'done');
    expect(await exited).toBe(0);
    expect(out).toContain(`seen first ${expected.readBigUInt64LE(0).toString(16).padStart(16, '0')} sum ${wordSum(expected)}`);
    expect(out).toContain(`reimported first ${expected.readBigUInt64LE(0).toString(16).padStart(16, '0')} sum ${wordSum(expected)}`);

    // The keeper's reference survived the app's release: the bytes are still there.
    const after = await pccl.writeChunks({ src: kept.id, items: [{ offset: HALF, length: HALF, path: join(gpu, 'after') }] });
    expect(after.hashes[0]).toBe(chunkHash(b));

    const spareFd = await pccl.keeperExportFd(spare.id); // keeper-owned memory exports through the driver
    expect(spareFd).toBeGreaterThan(2);
    pccl.closeFd(spareFd);
    await pccl.keeperRelease(spare.id);
    await pccl.keeperRelease(kept.id);
    const gone = await rejection(pccl.keeperCopy(kept.id, 0, kept.id, 0, 8));
    expect(gone.code).toBe('NOT_FOUND');
  });

  it('refuses out-of-range copies and reports driver failures as DRIVER_FAILED with the CUDA error', async () => {
    const s = await pccl.keeperSpare(SIZE);
    const outside = await rejection(pccl.keeperCopy(s.id, 8, s.id, 0, SIZE));
    expect(outside.code).toBe('BAD_ARGS');
    const notMem = join(dir, 'not-memory');
    writeFileSync(notMem, 'x');
    const fd = openSync(notMem, 'r');
    const bad = await rejection(pccl.keeperImport(fd, SIZE));
    closeSync(fd);
    expect(bad.code).toBe('DRIVER_FAILED');
    expect(String(bad.details.cudaError)).toMatch(/^CUDA_ERROR_/);
    expect(bad.message).toContain(String(bad.details.cudaError));
    await pccl.keeperRelease(s.id);
  });

  it('moves chunks larger than its 8 MiB staging buffer to and from device memory intact', async () => {
    const big = randomBytes(10 << 20);
    const src = join(dir, 'big.bin');
    writeFileSync(src, big);
    const fd = openSync(src, 'r');
    const host = pccl.mapFd(fd, big.length, false);
    closeSync(fd);
    const [hash] = (await pccl.writeChunks({ src: host, items: [{ offset: 0, length: big.length, path: join(dir, 'big.copy') }] })).hashes;
    pccl.unmap(host);

    const spare = await pccl.keeperSpare(13 << 20); // rounds up to 14 MiB
    const at = (2 << 20) + 8; // unaligned, spanning granules
    await pccl.readChunks({ dst: spare.id, items: [{ offset: at, length: big.length, path: src, hash: hash! }] });
    const out = join(dir, 'big.out');
    const back = await pccl.writeChunks({ src: spare.id, items: [{ offset: at, length: big.length, path: out }] });
    expect(back.hashes[0]).toBe(hash);
    expect(readFileSync(out).equals(big)).toBe(true);
    await pccl.keeperRelease(spare.id);
  });

  it("hashChunks of a keeper region (through pinned staging) equals writeChunks' hashes, also past 8 MiB", async () => {
    const bytes = randomBytes(12 << 20);
    const src = join(dir, 'hash-src.bin');
    writeFileSync(src, bytes);
    const fd = openSync(src, 'r');
    const host = pccl.mapFd(fd, bytes.length, false);
    closeSync(fd);
    const [hash] = (await pccl.hashChunks({ src: host, items: [{ offset: 0, length: bytes.length }] })).hashes;
    pccl.unmap(host);
    const spare = await pccl.keeperSpare(bytes.length);
    await pccl.readChunks({ dst: spare.id, items: [{ offset: 0, length: bytes.length, path: src, hash: hash! }] });

    // 2 MiB chunks as a pre-copy round hashes them, one range larger than staging, one unaligned and short.
    const items = [
      ...Array.from({ length: 6 }, (_, i) => ({ offset: i * SIZE, length: SIZE })),
      { offset: 0, length: bytes.length },
      { offset: SIZE + 5, length: 1003 },
    ];
    const out = join(dir, 'hashed');
    mkdirSync(out);
    const hashed = await pccl.hashChunks({ src: spare.id, items });
    const written = await pccl.writeChunks({ src: spare.id, items: items.map((it, i) => ({ ...it, path: join(out, `h${i}`) })) });
    expect(hashed.hashes).toEqual(written.hashes);
    expect(hashed.hashes[6]).toBe(hash);
    expect(hashed.hashes[0]).toBe(chunkHash(bytes.subarray(0, SIZE)));
    expect(hashed.bytes).toBe(written.bytes);

    // One chunk rewritten on the device: exactly its hash (and the whole range's) change.
    const b = Buffer.alloc(SIZE, 0x3c);
    const bPath = join(out, 'b');
    writeFileSync(bPath, b);
    await pccl.readChunks({ dst: spare.id, items: [{ offset: 4 * SIZE, length: SIZE, path: bPath, hash: chunkHash(b) }] });
    const again = await pccl.hashChunks({ src: spare.id, items });
    expect(items.flatMap((_, i) => (again.hashes[i] !== hashed.hashes[i] ? [i] : []))).toEqual([4, 6]);
    expect(again.hashes[4]).toBe(chunkHash(b));
    await pccl.keeperRelease(spare.id);
  });
});
