// The lazy fill after a keeper-path restore: the app was thawed with every slab chunk pending (libphos's
// on-demand gate), and this reads the chunk files into the keeper memory behind its back, in batches,
// sending `req gate {chunks}` after each batch. Chunks named in gate-wait events go first, on a second lane
// that does not wait for the background batch in flight (the app waits for them), then ascending. Each chunk is hash-checked as it is read (pccl readChunks copies nothing of a
// file that does not match): a corrupt chunk stays pending — the app never sees its bytes, it waits if it
// touches it — the file is logged, and the fill ends `failed` (phos ps: failed-fill).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../../common/src/index.ts';
import * as pccl from '../../../native/pccl/pccl.ts';
import { PhosError, toPhosError, type Frame } from '../../../proto/src/index.ts';
import type { Keeper } from './keeper.ts';
import type { LibphosLink } from './libphos-link.ts';
import { RECONNECT_TIMEOUT_MS } from './thaw.ts';

/** Chunks per readChunks call (and per gate frame). */
export const FILL_BATCH = 16;

/** One chunk still to fill: where it goes (keeper region + offset) and its gate index. */
export interface FillChunk { gate: number; region: number; alloc: number; index: number; offset: number; length: number; path: string; hash: string }

export interface FillStatus {
  state: 'filling' | 'done' | 'failed' | 'stopped';
  chunksDone: number;
  chunksTotal: number;
  bytesDone: number;
  bytesTotal: number;
  /** ms since the fill began (final once it ended). */
  ms: number;
  /** Wall clock, ms since the epoch. */
  startedAt: number;
  endedAt: number | null;
  /** Chunk files that failed verification (their chunks stay pending). */
  errors: { path: string; chunk: number; alloc: number; message: string }[];
}

export class Filler {
  readonly status: FillStatus;
  /** Resolves once the fill ended (done, failed or stopped) after start(); never rejects. */
  readonly finished: Promise<FillStatus>;
  private begin: () => void = () => {};
  private started = false;
  private readonly regions: number[];
  private readonly left = new Map<number, FillChunk>();
  private urgent: number[] = [];
  private stopRequested = false;
  private t0 = performance.now();

  constructor(private readonly pid: number, chunks: FillChunk[], private readonly link: LibphosLink, private readonly keeper: Keeper, private readonly log: Logger) {
    this.regions = [...new Set(chunks.map((c) => c.region))];
    keeper.hold(this.regions);
    for (const c of [...chunks].sort((a, b) => a.gate - b.gate)) this.left.set(c.gate, c);
    this.status = {
      state: 'filling', chunksDone: 0, chunksTotal: chunks.length, bytesDone: 0,
      bytesTotal: chunks.reduce((s, c) => s + c.length, 0), ms: 0, startedAt: Date.now(), endedAt: null, errors: [],
    };
    const go = new Promise<void>((resolve) => { this.begin = resolve; });
    this.finished = go.then(() => this.run()).then(async () => {
      await this.keeper.unhold(this.regions);
      return this.snapshot();
    });
  }

  /** Begins filling (once; after the thaw made the chunks pending). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.t0 = performance.now();
    this.status.startedAt = Date.now();
    this.begin();
  }

  snapshot(): FillStatus {
    if (this.status.state === 'filling') this.status.ms = performance.now() - this.t0;
    return { ...this.status, errors: [...this.status.errors] };
  }

  get active(): boolean { return this.status.state === 'filling'; }

  /** libphos reported a wait at the gate: those chunks go first, on a lane of their own (no waiting for the batch in flight). */
  onEvent(e: Frame<'event'>): void {
    if (e.kind !== 'gate-wait' || !e.chunks) return;
    const wanted = e.chunks.filter((c) => this.left.has(c));
    if (wanted.length === 0) return;
    this.urgent = [...wanted, ...this.urgent];
    if (this.started && !this.urgentLane && this.status.state === 'filling' && this.log$) {
      const log = this.log$;
      this.urgentLane = this.lane(true, log).catch((err: unknown) => { this.laneError ??= toPhosError(err); }).finally(() => { this.urgentLane = null; });
    }
  }

  /** The process is gone (or being torn down): stop after the batches in flight. */
  stop(): void {
    this.stopRequested = true;
  }

  /** The next urgent batch: gate-wait chunks not yet taken, of one region (readChunks fills one destination). */
  private urgentBatch(): FillChunk[] {
    this.urgent = this.urgent.filter((g) => this.left.has(g));
    const first = this.left.get(this.urgent[0] ?? -1);
    if (!first) return [];
    return [...new Set(this.urgent)].map((g) => this.left.get(g)!).filter((c) => c.region === first.region).slice(0, FILL_BATCH);
  }

  /** The next background batch: urgent chunks if any, else ascending from the lowest chunk left in its region. */
  private nextBatch(): FillChunk[] {
    const urgent = this.urgentBatch();
    if (urgent.length > 0) return urgent;
    const first = this.left.values().next().value;
    if (!first) return [];
    const batch: FillChunk[] = [first];
    for (let g = first.gate + 1; batch.length < FILL_BATCH; g++) {
      const c = this.left.get(g);
      if (!c || c.region !== first.region) break;
      batch.push(c);
    }
    return batch;
  }

  private urgentLane: Promise<void> | null = null;
  private laneError: PhosError | null = null;
  private log$: Logger | null = null;

  /** Reads and gates batches until none is left (urgent: only gate-wait chunks). Chunks are taken when chosen. */
  private async lane(urgentOnly: boolean, log: Logger): Promise<void> {
    for (;;) {
      if (this.stopRequested || this.laneError) return;
      const batch = urgentOnly ? this.urgentBatch() : this.nextBatch();
      if (batch.length === 0) return;
      for (const c of batch) this.left.delete(c.gate);
      const good = await this.read(batch, log);
      if (good.length === 0) continue;
      const rep = await this.gate(good.map((c) => c.gate), log);
      const tenth = Math.floor((10 * this.status.bytesDone) / Math.max(1, this.status.bytesTotal));
      this.status.chunksDone += good.length;
      this.status.bytesDone += good.reduce((s, c) => s + c.length, 0);
      log.debug({ chunks: good.length, urgent: urgentOnly, pending: rep.pending, done: this.status.chunksDone }, 'fill batch');
      if (Math.floor((10 * this.status.bytesDone) / Math.max(1, this.status.bytesTotal)) > tenth && this.status.bytesDone < this.status.bytesTotal) {
        log.info({ chunks: this.status.chunksDone, of: this.status.chunksTotal, bytes: this.status.bytesDone, ms: Math.round(performance.now() - this.t0) }, 'background fill progress');
      }
    }
  }

  private async run(): Promise<void> {
    const log = this.log.child({ pid: this.pid, op: 'fill' });
    this.log$ = log;
    log.info({ chunks: this.status.chunksTotal, bytes: this.status.bytesTotal }, 'background fill started');
    try {
      try {
        await this.lane(false, log);
      } finally {
        while (this.urgentLane) await this.urgentLane;
      }
      if (this.laneError) throw this.laneError;
      this.status.state = this.stopRequested ? 'stopped' : this.status.errors.length ? 'failed' : 'done';
    } catch (err) {
      const e = toPhosError(err);
      // The link went away: the app ended (or is gone); nothing left to fill for.
      this.status.state = this.stopRequested || e.code === 'AGENT_UNAVAILABLE' || e.code === 'ILLEGAL_STATE' ? 'stopped' : 'failed';
      if (this.status.state === 'failed') this.status.errors.push({ path: '', chunk: -1, alloc: -1, message: e.message });
      log.warn({ err: e }, 'background fill ended early');
    }
    this.status.ms = performance.now() - this.t0;
    this.status.endedAt = Date.now();
    const summary = { state: this.status.state, chunks: this.status.chunksDone, of: this.status.chunksTotal, bytes: this.status.bytesDone, ms: Math.round(this.status.ms * 10) / 10 };
    if (this.status.state === 'done') log.info(summary, 'background fill complete');
    else if (this.status.state === 'failed') log.error({ ...summary, errors: this.status.errors }, 'background fill failed: corrupt chunks stay pending (the app waits if it touches them)');
    else log.info(summary, 'background fill stopped');
  }

  /**
   * Marks chunks present at libphos's gate. libphos reconnects (hello {resume}) when its link drops while
   * chunks are pending: a gate that finds no link waits for that once, then sends again.
   */
  private async gate(chunks: number[], log: Logger): Promise<Record<string, unknown>> {
    try {
      return await this.link.request(this.pid, 'gate', { chunks });
    } catch (err) {
      const e = toPhosError(err);
      if (this.stopRequested || (e.code !== 'AGENT_UNAVAILABLE' && e.code !== 'ILLEGAL_STATE') || !existsSync(`/proc/${this.pid}`)) throw e;
      log.warn({ err: e }, 'gate frame found no link; waiting for libphos to reconnect');
      if (!this.link.linked(this.pid)) await this.link.waitForHello(this.pid, RECONNECT_TIMEOUT_MS);
      return await this.link.request(this.pid, 'gate', { chunks });
    }
  }

  /** Reads a batch; a corrupt chunk file is recorded and logged, and its chunks stay unfilled. */
  private async read(batch: FillChunk[], log: Logger): Promise<FillChunk[]> {
    return await readSkippingCorrupt(batch, (c, err) => {
      const message = `chunk ${c.index} of allocation ${c.alloc} (${c.path}): ${err.message}`;
      this.status.errors.push({ path: c.path, chunk: c.index, alloc: c.alloc, message });
      log.error({ path: c.path, alloc: c.alloc, chunk: c.index, gate: c.gate, err }, 'corrupt chunk: left pending');
    });
  }
}

/**
 * Reads chunks of one keeper region (hash-checked natively). When a file does not match, the batch is read
 * again chunk by chunk, so only that file's chunks are left out: `onCorrupt` hears each. Returns the chunks
 * that landed; any other error is thrown.
 */
async function readSkippingCorrupt(batch: FillChunk[], onCorrupt: (c: FillChunk, err: PhosError) => void): Promise<FillChunk[]> {
  const read = (cs: FillChunk[]) => pccl.readChunks({ dst: cs[0]!.region, items: cs.map(({ offset, length, path, hash }) => ({ offset, length, path, hash })) });
  const corrupt = (err: unknown): err is PhosError => err instanceof PhosError && err.code === 'IMAGE_CORRUPT';
  try {
    await read(batch);
    return batch;
  } catch (err) {
    if (!corrupt(err)) throw err;
  }
  const good: FillChunk[] = [];
  for (const c of batch) {
    try {
      await read([c]);
      good.push(c);
    } catch (err) {
      if (!corrupt(err)) throw err;
      onCorrupt(c, err);
    }
  }
  return good;
}

export const chunkKey = (c: { alloc: number; index: number }): string => `${c.alloc}:${c.index}`;

/**
 * Reads a restore's chunks into its fresh keeper memory while CRIU restores the process (which takes a
 * second for a PyTorch process's CPU image), ascending, in batches. The thaw stops it after the batch in
 * flight and leaves only the chunks it did not reach behind the gate, so an image that fits in that time
 * is not waited for by the app's first launches. A chunk whose file is corrupt is skipped: it stays for the
 * Filler, which names the file. (The chunks' gate indices are not known yet and not used.)
 */
export class Prefill {
  /** chunkKey of each chunk that landed. */
  readonly done = new Set<string>();
  private stopRequested = false;
  private readonly finished: Promise<void>;
  private readonly t0 = performance.now();

  constructor(chunks: FillChunk[], private readonly log: Logger) {
    this.finished = this.run(chunks);
  }

  private async run(chunks: FillChunk[]): Promise<void> {
    for (let i = 0; i < chunks.length && !this.stopRequested;) {
      const region = chunks[i]!.region;
      const batch: FillChunk[] = [];
      while (i < chunks.length && batch.length < FILL_BATCH && chunks[i]!.region === region) batch.push(chunks[i++]!);
      try {
        for (const c of await readSkippingCorrupt(batch, () => undefined)) this.done.add(chunkKey(c));
      } catch (err) {
        this.log.warn({ err }, 'prefill stopped: the chunks left fill after the thaw');
        return;
      }
    }
  }

  /** Stops after the batch in flight; resolves with the chunks that landed. */
  async stop(): Promise<Set<string>> {
    this.stopRequested = true;
    await this.finished;
    this.log.debug({ chunks: this.done.size, ms: Math.round(performance.now() - this.t0) }, 'prefill stopped');
    return this.done;
  }
}

/** Fill chunks for the slab allocations of a manifest (gate index = (va - vaBase) / chunkSize + index). */
export function fillChunks(dir: string, chunks: { alloc: number; index: number; hash: string; file: string }[], allocs: Map<number, { va: number; size: number; region: number }>, vaBase: number, chunkSize: number): FillChunk[] {
  const out: FillChunk[] = [];
  for (const c of chunks) {
    const a = allocs.get(c.alloc);
    if (!a) continue;
    const offset = c.index * chunkSize;
    out.push({ gate: (a.va - vaBase) / chunkSize + c.index, region: a.region, alloc: c.alloc, index: c.index, offset, length: Math.min(chunkSize, a.size - offset), path: join(dir, c.file), hash: c.hash });
  }
  return out;
}
