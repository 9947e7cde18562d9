// `npm run bench -- zero-trim [PAGES] [ZERO_PERCENT]`: how long the agent's zero-page pass
// (services/node-agent/src/criu-zero.ts) takes on a synthetic one-process CRIU image in /dev/shm: one
// private anonymous mapping of PAGES pages (default 200000, 800 MB), ZERO_PERCENT of them (default 15,
// what a PyTorch process's image still holds after libphos drops the driver copy's zero pages) whole zero
// pages spread over it. Five runs, each on a fresh image; writes bench/results/zero-trim.json.
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { trimZeroPages } from '../services/node-agent/src/index.ts';

const PAGE = 4096;
const RUNS = 5;
const varint = (v: number): number[] => { let x = BigInt(v); const o: number[] = []; do { let b = Number(x & 0x7fn); x >>= 7n; if (x) b |= 0x80; o.push(b); } while (x); return o; };
const field = (no: number, v: number) => [...varint(no << 3), ...varint(v)];
const bytesField = (no: number, b: number[]) => [...varint((no << 3) | 2), ...varint(b.length), ...b];
const frame = (m: number[]) => { const b = Buffer.alloc(4); b.writeUInt32LE(m.length); return Buffer.concat([b, Buffer.from(m)]); };
const image = (magic: number, msgs: number[][]) => { const h = Buffer.alloc(8); h.writeUInt32LE(0x54564319, 0); h.writeUInt32LE(magic, 4); return Buffer.concat([h, ...msgs.map(frame)]); };

/** mm (one private anonymous VMA), pagemap (one entry) and pages of `n` pages, `pct` % of them zero. */
function makeImage(n: number, pct: number): string {
  const base = 0x7f0000000000;
  const d = mkdtempSync('/dev/shm/phos-zero-trim-');
  const vma = bytesField(14, [...field(1, base), ...field(2, base + n * PAGE), ...field(3, 0), ...field(4, 0), ...field(5, 3), ...field(6, 0x22), ...field(7, (1 << 0) | (1 << 9)), ...field(8, 0)]);
  writeFileSync(join(d, 'mm-7.img'), image(0x57492820, [[...field(1, 0), ...vma]]));
  writeFileSync(join(d, 'pagemap-7.img'), image(0x56084025, [field(1, 1), [...field(1, base), ...field(2, n), ...field(4, 6)]]));
  const fd = openSync(join(d, 'pages-1.img'), 'w');
  const blk = Buffer.alloc(256 * PAGE);
  for (let p = 0; p < n; p += 256) {
    const k = Math.min(256, n - p);
    for (let i = 0; i < k; i++) blk.fill(((p + i) * 2654435761 >>> 0) % 100 < pct ? 0 : ((p + i) & 255) | 1, i * PAGE, (i + 1) * PAGE);
    writeSync(fd, blk, 0, k * PAGE);
  }
  closeSync(fd);
  return d;
}

export async function main(args: string[]): Promise<void> {
  const n = Number(args[0] ?? 200000), pct = Number(args[1] ?? 15);
  if (!Number.isInteger(n) || n < 1 || !(pct >= 0 && pct <= 100)) throw new Error('usage: npm run bench -- zero-trim [PAGES] [ZERO_PERCENT]');
  const ms: number[] = [];
  let pagesAfter = 0;
  for (let r = 0; r < RUNS; r++) {
    const d = makeImage(n, pct);
    try {
      const t0 = performance.now();
      const t = await trimZeroPages(d);
      ms.push(performance.now() - t0);
      pagesAfter = t.pagesAfter;
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  }
  const median = [...ms].sort((a, b) => a - b)[Math.floor(RUNS / 2)]!;
  const doc = { bench: 'zero-trim', date: new Date().toISOString(), machine: { nproc: cpus().length, cpu: cpus()[0]?.model ?? '?', kernel: release() },
    imageBytes: n * PAGE, zeroPercent: pct, pagesBefore: n, pagesAfter, runsMs: ms.map((x) => Math.round(x)), medianMs: Math.round(median) };
  writeFileSync(new URL('./results/zero-trim.json', import.meta.url), JSON.stringify(doc, null, 1) + '\n');
  console.log(`zero-trim: ${(n * PAGE / 1e9).toFixed(2)} GB image, ${n - pagesAfter} of ${n} pages zero: median ${Math.round(median)} ms (${doc.runsMs.join(', ')})`);
}
