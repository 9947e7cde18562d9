// trimZeroPages on hand-made CRIU images: which zero pages go (only those in private anonymous mappings),
// how the pagemap is split around them, and which images are left alone.
import { afterEach, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trimZeroPages } from '../../services/node-agent/src/index.ts';

const PAGE = 4096;
const varint = (v: number | bigint): number[] => { let x = BigInt(v); const o: number[] = []; do { let b = Number(x & 0x7fn); x >>= 7n; if (x) b |= 0x80; o.push(b); } while (x); return o; };
const field = (no: number, v: number | bigint) => [...varint(no << 3), ...varint(v)];
const bytesField = (no: number, b: number[]) => [...varint((no << 3) | 2), ...varint(b.length), ...b];
const frame = (m: number[]) => { const b = Buffer.alloc(4); b.writeUInt32LE(m.length); return Buffer.concat([b, Buffer.from(m)]); };
const image = (magic: number, msgs: number[][]) => { const h = Buffer.alloc(8); h.writeUInt32LE(0x54564319, 0); h.writeUInt32LE(magic, 4); return Buffer.concat([h, ...msgs.map(frame)]); };
const ANON = (1 << 0) | (1 << 9), FILE_PRIVATE = (1 << 0) | (1 << 6);
const vma = (start: number, end: number, status: number, flags = 0x22) => bytesField(14, [...field(1, start), ...field(2, end), ...field(3, 0), ...field(4, 0), ...field(5, 3), ...field(6, flags), ...field(7, status), ...field(8, 0)]);
const entry = (vaddr: number, pages: number, flags = 4 | 2) => [...field(1, vaddr), ...field(2, pages), ...field(4, flags)];
const page = (fill: number) => Buffer.alloc(PAGE, fill);

/** Decodes pagemap entries back (vaddr, pages, flags). */
function pagemap(buf: Buffer): { vaddr: number; pages: number; flags: number }[] {
  const out = [];
  for (let at = 8, i = 0; at < buf.length; i++) {
    const n = buf.readUInt32LE(at); const m = buf.subarray(at + 4, at + 4 + n); at += 4 + n;
    if (i === 0) continue;
    const f: Record<number, number> = {};
    for (let j = 0; j < m.length;) { let key = 0, s = 0, b; do { b = m[j++]!; key |= (b & 0x7f) << s; s += 7; } while (b & 0x80); let v = 0, mul = 1; do { b = m[j++]!; v += (b & 0x7f) * mul; mul *= 128; } while (b & 0x80); f[key >> 3] = v; }
    out.push({ vaddr: f[1]!, pages: f[2]!, flags: f[4]! });
  }
  return out;
}

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });
function imageDir(vmas: number[][], entries: number[][], pages: Buffer[], mmCount = 1): string {
  const d = mkdtempSync(join(tmpdir(), 'phos-zero-unit-'));
  dirs.push(d);
  for (let i = 0; i < mmCount; i++) {
    writeFileSync(join(d, `mm-${7 + i}.img`), image(0x57492820, [[...field(1, 0), ...vmas.flat()]]));
    writeFileSync(join(d, `pagemap-${7 + i}.img`), image(0x56084025, [field(1, 1), ...entries]));
  }
  writeFileSync(join(d, 'pages-1.img'), Buffer.concat(pages));
  return d;
}

it('drops zero pages of anonymous private mappings only, splitting the pagemap around them', async () => {
  // 0x10000-0x14000 anonymous (4 pages), 0x14000-0x18000 a private file mapping; one entry spans both.
  const pages = [page(1), page(0), page(0), page(2), page(0), page(3), page(0), page(0)];
  const d = imageDir([vma(0x10000, 0x14000, ANON), vma(0x14000, 0x18000, FILE_PRIVATE, 0x02)], [entry(0x10000, 8)], pages);
  const t = await trimZeroPages(d);
  expect(t).toEqual({ pagesBefore: 8, pagesAfter: 6, skipped: null });
  // Pages 1, 2 (zero, anonymous) go; 4, 6, 7 are zero but in the file mapping: a hole there would read the file.
  expect(pagemap(readFileSync(join(d, 'pagemap-7.img')))).toEqual([
    { vaddr: 0x10000, pages: 1, flags: 6 },
    { vaddr: 0x13000, pages: 5, flags: 6 },
  ]);
  expect(readFileSync(join(d, 'pages-1.img')).equals(Buffer.concat([pages[0]!, pages[3]!, pages[4]!, pages[5]!, pages[6]!, pages[7]!]))).toBe(true);
});

it('leaves alone an image with pages in a parent image or with more than one process', async () => {
  const pages = [page(0), page(0)];
  const parent = imageDir([vma(0x10000, 0x12000, ANON)], [entry(0x10000, 1), entry(0x11000, 1, 1)], [page(0)]);
  expect((await trimZeroPages(parent)).skipped).toMatch(/parent/);
  const two = imageDir([vma(0x10000, 0x12000, ANON)], [entry(0x10000, 2)], pages, 2);
  expect((await trimZeroPages(two)).skipped).toMatch(/2 processes/);
  expect(readFileSync(join(two, 'pages-1.img')).length).toBe(2 * PAGE);
  // Addresses a double cannot hold exactly are not rounded: the image stays as it is.
  const high = 0xffffffffff600000n;
  const far = imageDir([[...bytesField(14, [...field(1, high), ...field(2, high + 0x2000n), ...field(7, ANON)])]], [[...field(1, high), ...field(2, 2), ...field(4, 4)]], pages);
  expect((await trimZeroPages(far)).skipped).toMatch(/2\^53/);
  expect(readFileSync(join(far, 'pages-1.img')).length).toBe(2 * PAGE);
});

it('a pages file shorter than its pagemap is an error and leaves the image as it was', async () => {
  const d = imageDir([vma(0x10000, 0x14000, ANON)], [entry(0x10000, 4)], [page(0), page(5)]);
  const before = readFileSync(join(d, 'pagemap-7.img'));
  await expect(trimZeroPages(d)).rejects.toThrow(/shorter than its pagemap/);
  expect(readFileSync(join(d, 'pagemap-7.img')).equals(before)).toBe(true);
  expect(readFileSync(join(d, 'pages-1.img')).length).toBe(2 * PAGE);
});

it('compacts a pages file of several blocks in place, and writes nothing when no page can go', async () => {
  // 5000 pages (two 16 MiB blocks and a part): every third page zero, each kept page stamped with its index.
  const n = 5000;
  const all = Array.from({ length: n }, (_, i) => (i % 3 === 1 ? page(0) : Buffer.alloc(PAGE, (i % 250) + 1).fill(i >> 8, 0, 1)));
  const d = imageDir([vma(0x100000, 0x100000 + n * PAGE, ANON)], [entry(0x100000, n)], all);
  const t = await trimZeroPages(d);
  expect(t).toEqual({ pagesBefore: n, pagesAfter: n - Math.floor((n + 1) / 3), skipped: null });
  expect(readFileSync(join(d, 'pages-1.img')).equals(Buffer.concat(all.filter((_, i) => i % 3 !== 1)))).toBe(true);
  const runs = pagemap(readFileSync(join(d, 'pagemap-7.img')));
  expect(runs.reduce((s, r) => s + r.pages, 0)).toBe(t.pagesAfter);
  expect(runs[1]).toEqual({ vaddr: 0x100000 + 2 * PAGE, pages: 2, flags: 6 });

  // Zero pages only in a private file mapping: the image stays byte for byte, its pages file not even rewritten.
  const f = imageDir([vma(0x10000, 0x12000, FILE_PRIVATE, 0x02)], [entry(0x10000, 2)], [page(0), page(0)]);
  const mtime = statSync(join(f, 'pages-1.img')).mtimeMs;
  await new Promise((r) => setTimeout(r, 20));
  expect(await trimZeroPages(f)).toEqual({ pagesBefore: 2, pagesAfter: 2, skipped: null });
  expect(statSync(join(f, 'pages-1.img')).mtimeMs).toBe(mtime);
});
