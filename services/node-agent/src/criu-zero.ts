// CRIU writes every present page of a process, zero pages included: a PyTorch training process's image on
// an H200 was 41 % whole zero pages (bench/gpu/torch.sh, criuZeroPageBytes), most of them the driver's
// residue. In a private anonymous mapping a page the image leaves out reads as zero after the restore, as
// it did before, so those pages can go, and the restore then reads and faults in only the rest. This
// rewrites pagemap-N.img and pages-N.img of a one-process image without them. Anything else (file or
// shared mappings, huge-page mappings, pages in a parent image, more than one process) stays as CRIU wrote it.
// Image layout: CRIU's images/{pagemap,mm,vma}.proto and criu/include/{magic,image,pagemap}.h.
import { open, readdir, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

const IMG_COMMON_MAGIC = 0x54564319;
const PAGEMAP_MAGIC = 0x56084025;
const MM_MAGIC = 0x57492820;
const PE_PARENT = 1 << 0, PE_PRESENT = 1 << 2;
const VMA_AREA_REGULAR = 1 << 0, VMA_ANON_PRIVATE = 1 << 9;
const MAP_HUGETLB = 0x40000;
const PAGE = 4096;
const ZERO = Buffer.alloc(PAGE);
const BLOCK = 16 << 20;
/** writev takes at most this many buffers per call (Linux's IOV_MAX). */
const IOV_MAX = 1024;

export interface ZeroTrim { pagesBefore: number; pagesAfter: number; skipped: string | null }

interface Field { no: number; varint?: bigint; bytes?: Buffer }

/** The fields of one protobuf message (varint and length-delimited; fixed-width ones are skipped). */
function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let at = 0;
  const varint = (): bigint => {
    let v = 0n, shift = 0n;
    for (;;) {
      const b = buf[at++];
      if (b === undefined) throw new Error('truncated varint');
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (at < buf.length) {
    const key = Number(varint()), no = key >>> 3, wire = key & 7;
    if (wire === 0) out.push({ no, varint: varint() });
    else if (wire === 2) { const n = Number(varint()); out.push({ no, bytes: buf.subarray(at, at + n) }); at += n; }
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
  return out;
}

const num = (fs: Field[], no: number, dflt = 0n): bigint => fs.find((f) => f.no === no)?.varint ?? dflt;

function varintBytes(v: bigint): number[] {
  const out: number[] = [];
  do { let b = Number(v & 0x7fn); v >>= 7n; if (v) b |= 0x80; out.push(b); } while (v);
  return out;
}

/** The entries of a CRIU protobuf image (after its two magics), or throws naming what is wrong. */
function entries(buf: Buffer, magic: number, name: string): Buffer[] {
  if (buf.length < 8 || buf.readUInt32LE(0) !== IMG_COMMON_MAGIC || buf.readUInt32LE(4) !== magic) throw new Error(`${name}: not a CRIU image of the expected kind`);
  const out: Buffer[] = [];
  for (let at = 8; at < buf.length;) {
    const n = buf.readUInt32LE(at);
    if (at + 4 + n > buf.length) throw new Error(`${name}: truncated entry`);
    out.push(buf.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

function frame(msg: number[]): Buffer {
  const b = Buffer.alloc(4 + msg.length);
  b.writeUInt32LE(msg.length, 0);
  Buffer.from(msg).copy(b, 4);
  return b;
}

/** Addresses are doubles: user space lies below 2^47 (an image with larger ones is left alone). */
interface Run { vaddr: number; pages: number; flags: number }

/** Private anonymous, non-hugetlb mappings, as sorted [start, end) ranges. */
function anonRanges(mm: Buffer): [bigint, bigint][] {
  const vmas = fields(mm).filter((f) => f.no === 14 && f.bytes).map((f) => fields(f.bytes!));
  return vmas
    .filter((v) => {
      const status = Number(num(v, 7)), flags = Number(num(v, 6));
      return (status & VMA_AREA_REGULAR) !== 0 && (status & VMA_ANON_PRIVATE) !== 0 && (flags & MAP_HUGETLB) === 0;
    })
    .map((v) => [num(v, 1), num(v, 2)] as [bigint, bigint])
    .sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

/**
 * Leaves whole zero pages of private anonymous mappings out of the image in `dir`: pages-N.img is
 * compacted in place, pagemap-N.img replaced by rename. Returns the page counts, or why it left the image
 * alone. Throws ImageRewriteError when it failed after it began to compact (the image is then not whole);
 * any other error leaves the image as it was.
 */
export async function trimZeroPages(dir: string): Promise<ZeroTrim> {
  const names = await readdir(dir);
  const mms = names.filter((n) => /^mm-\d+\.img$/.test(n));
  const maps = names.filter((n) => /^pagemap-\d+\.img$/.test(n));
  const none = (why: string): ZeroTrim => ({ pagesBefore: 0, pagesAfter: 0, skipped: why });
  if (mms.length !== 1 || maps.length !== 1) return none(`${mms.length} processes in the image`);
  const anonBig = anonRanges(entries(await readFile(join(dir, mms[0]!)), MM_MAGIC, mms[0]!)[0] ?? Buffer.alloc(0));
  const pm = entries(await readFile(join(dir, maps[0]!)), PAGEMAP_MAGIC, maps[0]!);
  if (pm.length === 0) return none('empty pagemap');
  const pagesName = `pages-${num(fields(pm[0]!), 1)}.img`;
  // Without flags (older images) an entry is in the parent when in_parent says so, else present.
  const entriesBig = pm.slice(1).map((e) => {
    const f = fields(e), flags = f.find((x) => x.no === 4)?.varint;
    return { vaddr: num(f, 1), pages: Number(num(f, 2)), flags: flags !== undefined ? Number(flags) : num(f, 3) ? PE_PARENT : PE_PRESENT };
  });
  if ([...entriesBig.map((r) => r.vaddr), ...anonBig.flat()].some((v) => v >= 1n << 53n)) return none('addresses above 2^53');
  const runs: Run[] = entriesBig.map((r) => ({ ...r, vaddr: Number(r.vaddr) }));
  const anon = anonBig.map(([a, b]) => [Number(a), Number(b)] as [number, number]);
  // PE_LAZY only says a page may be served lazily (CRIU sets it on anonymous memory); its bytes are here
  // when PE_PRESENT is set. Pages in a parent image are not, and a parent may hold other bytes for them.
  if (runs.some((r) => r.flags & PE_PARENT)) return none('pages in a parent image');

  return await rewrite(dir, pagesName, maps[0]!, pm[0]!, runs, anon);
}

/** pwritev at `pos` until every byte of `bufs` is written (a short write continues where it stopped). */
async function writeAllAt(fh: FileHandle, bufs: Buffer[], pos: number): Promise<void> {
  let left = bufs;
  while (left.length) {
    let { bytesWritten } = await fh.writev(left.slice(0, IOV_MAX), pos);
    pos += bytesWritten;
    const rest: Buffer[] = [];
    for (const b of left) {
      if (bytesWritten >= b.length) { bytesWritten -= b.length; continue; }
      rest.push(bytesWritten ? b.subarray(bytesWritten) : b);
      bytesWritten = 0;
    }
    left = rest;
  }
}

/** A failure after pages-N.img was partly compacted: the image is no longer whole and must not be used. */
export class ImageRewriteError extends Error {}

/**
 * Compacts pages-N.img in place without the zero pages of `anon` (kept pages only move towards the
 * start, so a block is always read before anything is written over it; no second copy of the image is
 * needed, in memory or on disk), truncates it, then renames a new pagemap-N.img over the old. Until the
 * first zero page nothing is written: those pages are already where they belong.
 */
async function rewrite(dir: string, pagesName: string, mapName: string, headEntry: Buffer, runs: Run[], anon: [number, number][]): Promise<ZeroTrim> {
  const fh = await open(join(dir, pagesName), 'r+');
  const out: Run[] = [];
  let before = 0, after = 0, rpos = 0, wpos = 0, written = false;
  try {
    const need = runs.reduce((sum, r) => sum + (r.flags & PE_PRESENT ? r.pages : 0), 0) * PAGE;
    if ((await fh.stat()).size < need) throw new Error(`${pagesName}: shorter than its pagemap`);
    const buf = Buffer.alloc(BLOCK);
    let vi = 0; // anon range cursor (runs are in address order; out of order only keeps more)
    for (const r of runs) {
      if (!(r.flags & PE_PRESENT)) { out.push(r); continue; }
      before += r.pages;
      const base = r.vaddr;
      let cur: Run | null = null;
      for (let done = 0; done < r.pages;) {
        const n = Math.min(r.pages - done, BLOCK / PAGE);
        const { bytesRead } = await fh.read(buf, 0, n * PAGE, rpos);
        if (bytesRead !== n * PAGE) throw new Error(`${pagesName}: shorter than its pagemap`);
        // Kept runs go out as slices of the block in one pwritev per block (no copy); runs still in place are skipped.
        const kept: Buffer[] = [];
        let from = -1, at = -1;
        const gather = (end: number) => {
          if (from < 0) return;
          const len = (end - from) * PAGE;
          if (!kept.length && wpos === rpos + from * PAGE) wpos += len; // in place already
          else { if (!kept.length) at = wpos; kept.push(buf.subarray(from * PAGE, end * PAGE)); wpos += len; }
          from = -1;
        };
        for (let i = 0; i < n; i++) {
          const addr = base + (done + i) * PAGE;
          while (vi < anon.length && anon[vi]![1] <= addr) vi++;
          const inAnon = vi < anon.length && anon[vi]![0] <= addr;
          if (inAnon && ZERO.compare(buf, i * PAGE, (i + 1) * PAGE) === 0) { gather(i); cur = null; continue; }
          if (from < 0) from = i;
          if (cur) cur.pages++;
          else { cur = { vaddr: addr, pages: 1, flags: r.flags }; out.push(cur); }
          after++;
        }
        gather(n);
        if (kept.length) { written = true; await writeAllAt(fh, kept, at); }
        rpos += n * PAGE;
        done += n;
      }
    }
    if (after < before) { written = true; await fh.truncate(wpos); }
  } catch (err) {
    if (written) throw new ImageRewriteError(`${pagesName}: failed while leaving zero pages out (${(err as Error).message}); the image is not whole`);
    throw err;
  } finally {
    await fh.close();
  }
  if (after === before) return { pagesBefore: before, pagesAfter: after, skipped: null };
  const head = Buffer.alloc(8);
  head.writeUInt32LE(IMG_COMMON_MAGIC, 0);
  head.writeUInt32LE(PAGEMAP_MAGIC, 4);
  const body = out.map((r) => frame([0x08, ...varintBytes(BigInt(r.vaddr)), 0x10, ...varintBytes(BigInt(r.pages)), 0x20, ...varintBytes(BigInt(r.flags))]));
  try {
    const mapFile = await open(join(dir, `${mapName}.trim`), 'w');
    try { await mapFile.write(Buffer.concat([head, frame([...headEntry]), ...body])); } finally { await mapFile.close(); }
    // The image is not sealed yet: a crash before this rename leaves one that is never restored.
    await rename(join(dir, `${mapName}.trim`), join(dir, mapName));
  } catch (err) {
    await rm(join(dir, `${mapName}.trim`), { force: true });
    throw new ImageRewriteError(`${mapName}: cannot be rewritten after its pages were (${(err as Error).message}); the image is not whole`);
  }
  return { pagesBefore: before, pagesAfter: after, skipped: null };
}
