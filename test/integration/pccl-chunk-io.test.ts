// pccl chunk files: each range written to its own file with libphos's chunk hash, read back only after
// the hash checks out; damaged files and a full disk are named errors, never silent or partial. hashChunks
// gives the same hashes without writing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pccl from '../../native/pccl/pccl.ts';
import { ADDON_PATH } from '../../native/pccl/pccl.ts';
import { chunkHash, compileC } from '../../native/pccl/test/support.ts';
import { rejection } from '../helpers/expect.ts';

let dir: string;
let full: string; // a 1 MiB tmpfs
const SIZE = 256 * 1024 + 4096;
let data: Buffer;
let srcId: number;

/** A file of `bytes` mapped shared (the same path libphos's staging memfd takes); returns its region id. */
function mapped(name: string, bytes: Buffer, writable: boolean): number {
  const f = join(dir, name);
  writeFileSync(f, bytes);
  const fd = openSync(f, writable ? 'r+' : 'r');
  try {
    return pccl.mapFd(fd, bytes.length, writable);
  } finally {
    closeSync(fd);
  }
}

// Ranges with awkward shapes: a whole 64 KiB chunk, one at an odd offset, one not a multiple of 8 bytes.
const RANGES = [
  { offset: 0, length: 65536 },
  { offset: 65536 + 3, length: 131072 },
  { offset: 200000, length: 1000 },
];

beforeAll(() => {
  expect(existsSync(ADDON_PATH), `pccl addon missing at ${ADDON_PATH}: run bash deploy/install.sh`).toBe(true);
  dir = mkdtempSync(join(tmpdir(), 'pccl-chunks-'));
  data = randomBytes(SIZE);
  srcId = mapped('src.bin', data, false);
  full = join(dir, 'full');
  mkdirSync(full);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1M', 'tmpfs', full]);
});

afterAll(() => {
  try {
    execFileSync('umount', [full]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('pccl chunk io', () => {
  it("writes each range to its own file and returns libphos's chunk hash of it", async () => {
    const out = join(dir, 'w1');
    mkdirSync(out);
    const items = RANGES.map((r, i) => ({ ...r, path: join(out, `c${i}`) }));
    const res = await pccl.writeChunks({ src: srcId, items, fsync: true });
    expect(res.bytes).toBe(RANGES.reduce((n, r) => n + r.length, 0));
    items.forEach((it, i) => {
      const want = data.subarray(it.offset, it.offset + it.length);
      expect(readFileSync(it.path).equals(want)).toBe(true);
      expect(res.hashes[i]).toBe(chunkHash(want));
    });
    expect(readdirSync(out).sort()).toEqual(['c0', 'c1', 'c2']); // no temp files left
    // And against libphos's own C reference (whole words only, as libphos's chunks are).
    const ref = compileC('hash-ref');
    for (const i of [0, 1]) expect(execFileSync(ref, [items[i]!.path]).toString().trim()).toBe(res.hashes[i]);
    // Content addressing: the same bytes give the same hash at any offset.
    const again = await pccl.writeChunks({ src: srcId, items: [{ offset: 0, length: 65536, path: join(out, 'again') }] });
    expect(again.hashes[0]).toBe(res.hashes[0]);
  });

  it('reads chunk files back into place after verifying their hashes', async () => {
    const out = join(dir, 'r1');
    mkdirSync(out);
    const items = RANGES.map((r, i) => ({ ...r, path: join(out, `c${i}`) }));
    const { hashes } = await pccl.writeChunks({ src: srcId, items });
    const dst = mapped('dst-r1.bin', Buffer.alloc(SIZE), true);
    const res = await pccl.readChunks({ dst, items: items.map((it, i) => ({ ...it, hash: hashes[i]! })) });
    expect(res.bytes).toBe(RANGES.reduce((n, r) => n + r.length, 0));
    for (const r of RANGES) expect(pccl.mapRead(dst, r.offset, r.length).equals(data.subarray(r.offset, r.offset + r.length))).toBe(true);
    expect(pccl.mapRead(dst, 65536, 3).equals(Buffer.alloc(3))).toBe(true); // bytes between items untouched
    pccl.unmap(dst);
  });

  it('refuses a chunk with a flipped byte as IMAGE_CORRUPT naming the file, and leaves the destination untouched', async () => {
    const out = join(dir, 'r2');
    mkdirSync(out);
    const items = RANGES.map((r, i) => ({ ...r, path: join(out, `c${i}`) }));
    const { hashes } = await pccl.writeChunks({ src: srcId, items });
    const bad = readFileSync(items[1]!.path);
    bad[12345] = bad[12345]! ^ 0x01;
    writeFileSync(items[1]!.path, bad);
    const dst = mapped('dst-r2.bin', Buffer.alloc(SIZE), true);
    const err = await rejection(pccl.readChunks({ dst, items: [{ ...items[1]!, hash: hashes[1]! }] }));
    expect(err.code).toBe('IMAGE_CORRUPT');
    expect(err.message).toContain(items[1]!.path);
    expect(err.details.path).toBe(items[1]!.path);
    expect(err.details.expected).toBe(hashes[1]);
    expect(pccl.mapRead(dst, items[1]!.offset, items[1]!.length).equals(Buffer.alloc(items[1]!.length))).toBe(true);
    pccl.unmap(dst);
  });

  it('refuses a truncated or missing chunk file as IMAGE_CORRUPT naming it', async () => {
    const out = join(dir, 'r3');
    mkdirSync(out);
    const items = RANGES.slice(0, 2).map((r, i) => ({ ...r, path: join(out, `c${i}`) }));
    const { hashes } = await pccl.writeChunks({ src: srcId, items });
    const dst = mapped('dst-r3.bin', Buffer.alloc(SIZE), true);
    truncateSync(items[0]!.path, 1000);
    const short = await rejection(pccl.readChunks({ dst, items: [{ ...items[0]!, hash: hashes[0]! }] }));
    expect(short.code).toBe('IMAGE_CORRUPT');
    expect(short.message).toContain(`${items[0]!.path} is 1000 bytes, expected 65536`);
    rmSync(items[1]!.path);
    const missing = await rejection(pccl.readChunks({ dst, items: [{ ...items[1]!, hash: hashes[1]! }] }));
    expect(missing.code).toBe('IMAGE_CORRUPT');
    expect(missing.message).toContain(`${items[1]!.path} is missing`);
    pccl.unmap(dst);
  });

  it('reports DISK_FULL naming the file and leaves no partial file behind', async () => {
    const big = mapped('big.bin', randomBytes(2 << 20), false);
    const small = { offset: 0, length: 4096, path: join(full, 'fits') };
    const path = join(full, 'too-big');
    const err = await rejection(pccl.writeChunks({ src: big, items: [small, { offset: 0, length: 2 << 20, path }], fsync: true }));
    expect(err.code).toBe('DISK_FULL');
    expect(err.message).toContain(path);
    expect(err.details.path).toBe(path);
    expect(readdirSync(full)).toEqual(['fits']); // the whole earlier chunk stays; nothing partial
    pccl.unmap(big);
  });

  it("hashChunks gives writeChunks' hash per range without writing, and a changed byte changes only its range's", async () => {
    const out = join(dir, 'h1');
    mkdirSync(out);
    const bytes = randomBytes(SIZE);
    const id = mapped('hash.bin', bytes, true);
    // RANGES plus back-to-back 64 KiB chunks over the whole mapping (the last one short), as a pre-copy round asks.
    const ranges = [...RANGES, ...Array.from({ length: Math.ceil(SIZE / 65536) }, (_, i) => ({ offset: i * 65536, length: Math.min(65536, SIZE - i * 65536) }))];
    const before = await pccl.hashChunks({ src: id, items: ranges });
    const written = await pccl.writeChunks({ src: id, items: ranges.map((r, i) => ({ ...r, path: join(out, `c${i}`) })) });
    expect(before.hashes).toEqual(written.hashes);
    expect(before.bytes).toBe(written.bytes);
    expect(typeof before.ms).toBe('number');
    ranges.forEach((r, i) => expect(before.hashes[i]).toBe(chunkHash(bytes.subarray(r.offset, r.offset + r.length))));

    const at = 3 * 65536 + 777; // inside the 4th whole chunk only (and none of RANGES)
    pccl.mapWrite(id, at, Buffer.from([bytes[at]! ^ 0x40]));
    const after = await pccl.hashChunks({ src: id, items: ranges });
    const changed = ranges.flatMap((r, i) => (after.hashes[i] !== before.hashes[i] ? [i] : []));
    expect(changed).toEqual([RANGES.length + 3]);
    expect((await pccl.hashChunks({ src: id, items: [] })).hashes).toEqual([]);
    pccl.unmap(id);
  });

  it('hashes like the reference at every start alignment and around the 16-word blocks of the vector form', async () => {
    const bytes = randomBytes(SIZE);
    const id = mapped('align.bin', bytes, false);
    // Starts 0..17 bytes in; lengths below, at and past multiples of 128 bytes (one AVX-512 iteration), odd tails.
    const lengths = [1, 8, 120, 127, 128, 129, 136, 255, 256, 1031, 65536 + 13];
    const ranges = Array.from({ length: 18 }, (_, off) => lengths.map((length) => ({ offset: 4096 + off, length }))).flat();
    const got = await pccl.hashChunks({ src: id, items: ranges });
    ranges.forEach((r, i) => expect(got.hashes[i], `offset ${r.offset} length ${r.length}`).toBe(chunkHash(bytes.subarray(r.offset, r.offset + r.length))));
    pccl.unmap(id);
  });

  it('refuses ranges outside the region and unknown ids as BAD_ARGS / NOT_FOUND', async () => {
    const outside = await rejection(pccl.writeChunks({ src: srcId, items: [{ offset: SIZE - 10, length: 11, path: join(dir, 'x') }] }));
    expect(outside.code).toBe('BAD_ARGS');
    const unknown = await rejection(pccl.writeChunks({ src: 999_999, items: [{ offset: 0, length: 1, path: join(dir, 'x') }] }));
    expect(unknown.code).toBe('NOT_FOUND');
    const readOnly = await rejection(pccl.readChunks({ dst: srcId, items: [{ offset: 0, length: 8, path: join(dir, 'x'), hash: '0'.repeat(16) }] }));
    expect(readOnly.code).toBe('BAD_ARGS');
    expect(existsSync(join(dir, 'x'))).toBe(false);
    expect((await rejection(pccl.hashChunks({ src: srcId, items: [{ offset: SIZE - 10, length: 11 }] }))).code).toBe('BAD_ARGS');
    expect((await rejection(pccl.hashChunks({ src: srcId, items: [{ offset: 0, length: 0 }] }))).code).toBe('BAD_ARGS');
    expect((await rejection(pccl.hashChunks({ src: 999_999, items: [{ offset: 0, length: 1 }] }))).code).toBe('NOT_FOUND');
  });
});
