// An image directory on disk: manifest.json (proto's MANIFEST_SCHEMA plus the agent section), gpu/
// chunk files named by hash and written by pccl on native threads (deduplicated within the image and
// against the parent), criu/ (CRIU's own files). Creating, sealing, reading and verifying it live here.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import * as pccl from '../../../native/pccl/pccl.ts';
import { IMAGE_AGENT_SCHEMA, MANIFEST_SCHEMA, PhosError, check, type ImageAgentSection, type Manifest } from '../../../proto/src/index.ts';
import type { KeptAllocation } from './keeper.ts';

export type ImageManifest = Manifest & { agent: ImageAgentSection };

/** Chunks per writeChunks/readChunks call: big enough to keep the native threads busy, small enough for progress. */
const CHUNK_BATCH = 16;

export interface ImageDir {
  dir: string;
  gpuDir: string;
  criuDir: string;
  /** true when this run created `dir` (a failure removes all of it), else only what it added. */
  created: boolean;
}

/** Creates dir/, gpu/, criu/; refuses a directory that already holds an image or other files. */
export function createImageDir(dirArg: string): ImageDir {
  const dir = resolve(dirArg);
  let created = false;
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new PhosError('BAD_ARGS', `${dir} exists and is not a directory`, { remedy: 'choose another --dir' });
    const entries = readdirSync(dir).filter((e) => e !== 'lost+found');
    if (entries.length > 0) throw new PhosError('BAD_ARGS', `${dir} is not empty (${entries.slice(0, 3).join(', ')}…); an image needs an empty or new directory`, { remedy: 'choose another --dir, or remove the old image' });
  } else {
    mkdirSync(dir, { recursive: true });
    created = true;
  }
  const img = { dir, gpuDir: join(dir, 'gpu'), criuDir: join(dir, 'criu'), created };
  mkdirSync(img.gpuDir);
  mkdirSync(img.criuDir);
  return img;
}

/** Removes a partial image: the whole directory when this run made it, else everything it put inside. */
export function removeImageDir(img: ImageDir): void {
  if (img.created) { rmSync(img.dir, { recursive: true, force: true }); return; }
  for (const e of readdirSync(img.dir)) if (e !== 'lost+found') rmSync(join(img.dir, e), { recursive: true, force: true });
}

export interface ChunkWriteProgress { bytesDone: number; bytesTotal: number }
export interface ChunkWriteResult { chunks: Manifest['chunks']; written: number; fromParent: number; bytesWritten: number }

/**
 * Writes every chunk of the kept allocations into gpu/: each chunk goes to a temporary file (pccl hashes
 * it while writing), then becomes gpu/<hash>, or is dropped when the parent image or this image already
 * holds that hash (the manifest then names the existing file, relative to this image).
 */
export async function writeGpuChunks(img: ImageDir, allocs: KeptAllocation[], chunkSize: number, parent: { dir: string; manifest: Manifest } | null, fsync: boolean, onProgress: (p: ChunkWriteProgress) => void): Promise<ChunkWriteResult> {
  const parentFiles = new Map<string, string>();
  if (parent) for (const c of parent.manifest.chunks) parentFiles.set(c.hash, relative(img.dir, resolve(parent.dir, c.file)));
  const own = new Map<string, string>();
  const chunks: Manifest['chunks'] = [];
  const bytesTotal = allocs.reduce((s, a) => s + a.size, 0);
  let bytesDone = 0, written = 0, fromParent = 0, bytesWritten = 0, tmpN = 0;
  onProgress({ bytesDone, bytesTotal });
  for (const a of allocs) {
    const n = Math.ceil(a.size / chunkSize);
    for (let first = 0; first < n; first += CHUNK_BATCH) {
      const items = [];
      for (let i = first; i < Math.min(n, first + CHUNK_BATCH); i++) {
        const offset = i * chunkSize;
        items.push({ offset, length: Math.min(chunkSize, a.size - offset), path: join(img.gpuDir, `.w${tmpN++}`), index: i });
      }
      const r = await pccl.writeChunks({ src: a.region, items: items.map(({ offset, length, path }) => ({ offset, length, path })), fsync });
      items.forEach((it, k) => {
        const hash = r.hashes[k]!;
        const known = own.get(hash) ?? parentFiles.get(hash);
        let file: string;
        if (known !== undefined) {
          unlinkSync(it.path);
          file = known;
          if (!own.has(hash)) fromParent++;
        } else {
          file = `gpu/${hash}`;
          renameSync(it.path, join(img.dir, file));
          own.set(hash, file);
          written++;
          bytesWritten += it.length;
        }
        chunks.push({ alloc: a.id, index: it.index, hash, file });
      });
      bytesDone += items.reduce((s, it) => s + it.length, 0);
      onProgress({ bytesDone, bytesTotal });
    }
  }
  if (fsync) fsyncDir(img.gpuDir);
  return { chunks, written, fromParent, bytesWritten };
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

/** Sizes of every file CRIU wrote, so a truncated image is refused naming the file. */
export function criuFileSizes(criuDir: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of readdirSync(criuDir)) {
    const st = statSync(join(criuDir, e));
    if (st.isFile() && !e.endsWith('.log') && e !== 'restored.pid') out[e] = st.size;
  }
  return out;
}

/** Writes manifest.json atomically (temp, fsync, rename, fsync of the directory): the image is sealed once this returns. */
export function writeManifest(img: { dir: string }, m: ImageManifest, fsync: boolean): void {
  const tmp = join(img.dir, `.manifest.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    writeFileSync(fd, JSON.stringify(m, null, 1) + '\n');
    if (fsync) fsyncSync(fd);
  } finally { closeSync(fd); }
  renameSync(tmp, join(img.dir, 'manifest.json'));
  if (fsync) fsyncDir(img.dir);
}

function corrupt(path: string, why: string): PhosError {
  return new PhosError('IMAGE_CORRUPT', `${path}: ${why}`, { details: { path } });
}

/** Reads and checks manifest.json; IMAGE_CORRUPT names the file and the problem. */
export function readManifest(dirArg: string, opts: { requireSealed?: boolean } = {}): { dir: string; manifest: ImageManifest } {
  const dir = resolve(dirArg);
  const path = join(dir, 'manifest.json');
  if (!existsSync(path)) {
    if (!existsSync(dir)) throw new PhosError('NOT_FOUND', `no image at ${dir}`, { remedy: 'name an image directory written by phos dump or phos pre-dump' });
    throw corrupt(path, 'missing: the image was never sealed (an interrupted dump?)');
  }
  let m: unknown;
  try { m = JSON.parse(readFileSync(path, 'utf8')); } catch (err) { throw corrupt(path, `not valid JSON (${(err as Error).message})`); }
  const problem = check(MANIFEST_SCHEMA, m) ?? check(IMAGE_AGENT_SCHEMA, (m as { agent?: unknown }).agent, '$.agent');
  if (problem) throw corrupt(path, problem);
  const manifest = m as ImageManifest;
  if (opts.requireSealed !== false && !manifest.sealed) throw corrupt(path, 'not sealed');
  return { dir, manifest };
}

/** Checks every CRIU file's size; IMAGE_CORRUPT names a missing or truncated file. */
export function verifyCriuFiles(dir: string, m: ImageManifest): void {
  const criuDir = isAbsolute(m.criu.dir) ? m.criu.dir : join(dir, m.criu.dir);
  for (const [name, size] of Object.entries(m.agent.criuFiles)) {
    const p = join(criuDir, name);
    if (!existsSync(p)) throw corrupt(p, 'missing from the CRIU image');
    const got = statSync(p).size;
    if (got !== size) throw corrupt(p, `${got} bytes, the image recorded ${size} (truncated or replaced)`);
  }
}

/** Every gpu/ chunk file exists with its chunk's length (hashes are checked when the chunk is read). */
export function verifyChunkFiles(dir: string, m: ImageManifest): void {
  const sizes = new Map(m.allocations.map((a) => [a.id, a.size]));
  for (const c of m.chunks) {
    const p = resolve(dir, c.file);
    const want = chunkLength(c, sizes, m.chunkSize);
    let got: number;
    try { got = statSync(p).size; } catch { throw corrupt(p, `missing (chunk ${c.index} of allocation ${c.alloc})`); }
    if (got !== want) throw corrupt(p, `${got} bytes, chunk ${c.index} of allocation ${c.alloc} needs ${want} (truncated or replaced)`);
  }
}

/** Reads every chunk file through pccl into scratch keeper memory: size and hash checked on native threads. */
export async function verifyGpuChunks(dir: string, m: ImageManifest, onProgress: (p: ChunkWriteProgress) => void): Promise<void> {
  if (m.chunks.length === 0) return;
  const sizes = new Map(m.allocations.map((a) => [a.id, a.size]));
  const scratch = await pccl.keeperSpare(m.chunkSize);
  const bytesTotal = m.chunks.reduce((s, c) => s + chunkLength(c, sizes, m.chunkSize), 0);
  let bytesDone = 0;
  try {
    for (let i = 0; i < m.chunks.length; i += CHUNK_BATCH) {
      const batch = m.chunks.slice(i, i + CHUNK_BATCH);
      try {
        await pccl.readChunks({ dst: scratch.id, items: batch.map((c) => ({ offset: 0, length: chunkLength(c, sizes, m.chunkSize), path: join(dir, c.file), hash: c.hash })) });
      } catch (err) {
        if (err instanceof PhosError && err.code === 'IMAGE_CORRUPT') {
          const path = String(err.details.path ?? '');
          const c = batch.find((x) => resolve(dir, x.file) === resolve(path)) ?? batch[0]!;
          throw new PhosError('IMAGE_CORRUPT', `chunk ${c.index} of allocation ${c.alloc} (${resolve(dir, c.file)}): ${err.message}`, { details: { ...err.details, path: resolve(dir, c.file), alloc: c.alloc, chunk: c.index }, cause: err });
        }
        throw err;
      }
      bytesDone += batch.reduce((s, c) => s + chunkLength(c, sizes, m.chunkSize), 0);
      onProgress({ bytesDone, bytesTotal });
    }
  } finally {
    await pccl.keeperRelease(scratch.id).catch(() => undefined);
  }
}

function chunkLength(c: { alloc: number; index: number }, sizes: Map<number, number>, chunkSize: number): number {
  const size = sizes.get(c.alloc) ?? 0;
  return Math.max(0, Math.min(chunkSize, size - c.index * chunkSize));
}

/** The directory of an image's manifest path argument, for parent links written relative to the child. */
export function imageRoot(p: string): string {
  return existsSync(join(p, 'manifest.json')) ? resolve(p) : dirname(resolve(p));
}
