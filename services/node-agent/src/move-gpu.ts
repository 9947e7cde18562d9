// Same-node GPU move (`phos migrate --pid N --to-gpu G`): while the app runs, every kept slab is copied
// device to device onto the target GPU (a peer copy between the keeper's regions) between two libphos
// hash rounds, and the chunks the second round found changed are copied again; then a keeper-path dump
// that writes no gpu/ files, during which only the chunks written since that round (the freeze's own
// round says which) are copied; then a restore of the CRIU image with the GPU map, handed the copies.
// The app is down from the freeze to the thaw; nothing goes through host memory or disk but the CRIU
// image. A failed restore puts it back on its own GPUs from the memory still kept there.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import * as pccl from '../../../native/pccl/pccl.ts';
import { PhosError, type ControlPhase, type GpuMapEntry, type Manifest, type MoveResult } from '../../../proto/src/index.ts';
import { checkpointProcess, type CheckpointDeps, type Reporter } from './checkpoint.ts';
import type { ImageManifest } from './image.ts';
import type { KeptAllocation } from './keeper.ts';
import { LIBPHOS_CHUNK, changedChunks } from './libphos-link.ts';
import { placeGpus, restoreImage, type GpuPlacement, type RestoreDeps } from './restore.ts';

/** Places the process's GPUs as the move asks; BAD_ARGS/ILLEGAL_STATE before anything is stopped. */
async function plan(d: CheckpointDeps, pid: number, toGpu: number): Promise<{ place: GpuPlacement; map: GpuMapEntry[]; fromGpu: number }> {
  const gpus = d.link.lastGpus(pid);
  if (!gpus?.length) throw new PhosError('ILLEGAL_STATE', `pid ${pid}: libphos has not said which GPUs it uses (not connected, or an older libphos)`, { remedy: 'run the process with phos run' });
  const map = [{ from: 0, to: toGpu }];
  const place = await placeGpus(d.keeper, { gpus } as ImageManifest, map);
  const fromGpu = (await d.keeper.agentGpus()).indexOf(gpus[0]!);
  if (fromGpu === toGpu) throw new PhosError('BAD_ARGS', `pid ${pid} already runs on GPU ${toGpu}`, { details: { pid, toGpu } });
  return { place, map, fromGpu };
}


/** A fresh region on a's placed GPU holding a copy of all of a; pushed to `out` (the caller releases it). */
async function copyWhole(a: KeptAllocation, place: GpuPlacement, out: KeptAllocation[]): Promise<KeptAllocation> {
  const gpu = place.gpuOf(a.device ?? 0);
  const r = await pccl.keeperSpare(a.size, gpu);
  const copy = { ...a, region: r.id, gpu };
  out.push(copy);
  await pccl.keeperCopy(r.id, 0, a.region, 0, a.size);
  return copy;
}

/** Copies the region chunks `changed` (libphos indices) of slab a from its kept memory into `to`; returns bytes. */
async function copyChunks(a: KeptAllocation, to: number, changed: Set<number>, vaBase: number): Promise<number> {
  let bytes = 0;
  const first = Math.floor((a.va - vaBase) / LIBPHOS_CHUNK), n = Math.ceil(a.size / LIBPHOS_CHUNK);
  for (let i = 0; i < n;) {
    if (!changed.has(first + i)) { i++; continue; }
    let j = i;
    while (j < n && changed.has(first + j)) j++; // adjacent changed chunks: one copy
    const off = i * LIBPHOS_CHUNK, len = Math.min(j * LIBPHOS_CHUNK, a.size) - off;
    await pccl.keeperCopy(to, off, a.region, off, len);
    bytes += len;
    i = j;
  }
  return bytes;
}

/**
 * While the app runs: a hash round (baseline), a copy of every slab, a second round, and a second copy of
 * what it found changed. Returns the copies by allocation id (each made on its placed GPU).
 */
async function precopy(d: CheckpointDeps, pid: number, place: GpuPlacement, vaBase: number, out: KeptAllocation[]): Promise<Map<number, KeptAllocation>> {
  const done = new Map<number, KeptAllocation>();
  await d.link.request(pid, 'hash-round');
  for (const a of d.keeper.allocations(pid)) if (a.kind === 'slab') done.set(a.id, await copyWhole(a, place, out));
  const again = changedChunks(await d.link.request(pid, 'hash-round'));
  for (const a of d.keeper.allocations(pid)) {
    const c = done.get(a.id);
    if (c && again) await copyChunks(a, c.region, again, vaBase);
    else if (c) await pccl.keeperCopy(c.region, 0, a.region, 0, a.size);
  }
  return done;
}

async function release(list: KeptAllocation[]): Promise<void> {
  for (const a of list) await pccl.keeperRelease(a.region).catch(() => undefined);
}

export async function moveToGpu(d: RestoreDeps, req: { pid: number; toGpu: number }, report: Reporter): Promise<MoveResult> {
  const t0 = performance.now();
  const { pid, toGpu } = req;
  const { place, map, fromGpu } = await plan(d, pid, toGpu);
  const dir = join(d.o.stateDir, 'moves', `${pid}-${Date.now()}`);
  let frozenAt = 0;
  const watch: Reporter = {
    phase: (phase: ControlPhase, done?: number, total?: number) => { if (phase === 'freeze' && !frozenAt) frozenAt = performance.now(); report.phase(phase, done, total); },
    step: (s) => report.step(s),
  };
  const made: KeptAllocation[] = []; // every region this move allocated
  let copies: KeptAllocation[] = [];
  let old: KeptAllocation[] = [];
  let copyMs = 0, copiedInDowntime = 0;
  let atFreeze: Set<number> | null = null;
  const vaBase = d.link.hello(pid)?.vaBase ?? 0;
  // The app is frozen here: the pre-copies are brought up to date with the chunks written since the last
  // round (all of an allocation that was not pre-copied, or when the freeze could not say).
  const ship = async (allocs: KeptAllocation[]): Promise<Manifest['chunks']> => {
    const c0 = performance.now();
    old = allocs;
    for (const a of allocs) {
      const c = pre.get(a.id);
      if (c && c.size === a.size && atFreeze) {
        copiedInDowntime += await copyChunks(a, c.region, atFreeze, vaBase);
        copies.push(c);
      } else {
        copies.push(await copyWhole(a, place, made));
        copiedInDowntime += a.size;
      }
    }
    copyMs = performance.now() - c0;
    return []; // no gpu/ files: the restore is handed the copies
  };
  let pre = new Map<number, KeptAllocation>();
  const dropUnused = async () => release(made.filter((m) => !copies.some((c) => c.region === m.region)));
  try {
    pre = await precopy(d, pid, place, vaBase, made);
    await checkpointProcess(d, { pid, dir, kind: 'dump', ship, onFrozen: (rep) => { atFreeze = changedChunks(rep); } }, watch);
  } catch (err) {
    copies = [];
    await release(made); // the dump rolled back: the app runs on, its memory still kept where it was
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  await dropUnused(); // pre-copies of allocations freed before the freeze
  let thawedAt = 0;
  try {
    await restoreImage(d, dir, watch, { regions: copies, gpuMap: map });
    thawedAt = performance.now();
  } catch (err) {
    d.log.error({ pid, err }, 'restore on the new GPU failed; restoring on the old one');
    await release(made);
    await restoreImage(d, dir, report, { regions: old });
    throw new PhosError('DRIVER_FAILED', `pid ${pid} could not be restored on GPU ${toGpu} (${(err as Error).message}); it runs on GPU ${fromGpu} again`, { cause: err, details: { pid, toGpu } });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const downtimeMs = thawedAt - frozenAt;
  await release(old); // the restored app holds the copies; the old GPU's memory goes
  const bytes = copies.reduce((s, a) => s + a.size, 0);
  d.log.info({ pid, fromGpu, toGpu, bytes, copiedInDowntime, downtimeMs: Math.round(downtimeMs), copyMs: Math.round(copyMs) }, 'moved to another GPU');
  return { pid, fromGpu, toGpu, bytes, bytesInDowntime: copiedInDowntime, downtimeMs, copyMs, totalMs: performance.now() - t0 };
}
