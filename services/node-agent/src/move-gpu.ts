// Same-node GPU move (`phos migrate --pid N --to-gpu G`): a keeper-path dump that writes no gpu/ files
// (the kept memory is the data), a device-to-device copy of every kept allocation onto the target GPU
// (a peer copy between the keeper's regions), and a restore of the CRIU image with the GPU map, handed
// the copies. The app is down from the freeze to the thaw; nothing goes through host memory or disk but
// the CRIU image. A failed restore puts it back on its own GPUs from the memory still kept there.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import * as pccl from '../../../native/pccl/pccl.ts';
import { PhosError, type ControlPhase, type GpuMapEntry, type Manifest, type MoveResult } from '../../../proto/src/index.ts';
import { checkpointProcess, type CheckpointDeps, type Reporter } from './checkpoint.ts';
import type { ImageManifest } from './image.ts';
import type { KeptAllocation } from './keeper.ts';
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

/** Copies each kept allocation onto its placed GPU; the copies are the caller's (released on failure here). */
async function copyAcross(allocs: KeptAllocation[], place: GpuPlacement, out: KeptAllocation[]): Promise<void> {
  for (const a of allocs) {
    const gpu = place.gpuOf(a.device ?? 0);
    const r = await pccl.keeperSpare(a.size, gpu);
    out.push({ ...a, region: r.id, gpu });
    await pccl.keeperCopy(r.id, 0, a.region, 0, a.size);
  }
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
  const copies: KeptAllocation[] = [];
  let old: KeptAllocation[] = [];
  let copyMs = 0;
  const ship = async (allocs: KeptAllocation[]): Promise<Manifest['chunks']> => {
    const c0 = performance.now();
    old = allocs;
    await copyAcross(allocs, place, copies);
    copyMs = performance.now() - c0;
    return []; // no gpu/ files: the restore is handed the copies
  };
  try {
    await checkpointProcess(d, { pid, dir, kind: 'dump', ship }, watch);
  } catch (err) {
    await release(copies); // the dump rolled back: the app runs on, its memory still kept where it was
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  let thawedAt = 0;
  try {
    await restoreImage(d, dir, watch, { regions: copies, gpuMap: map });
    thawedAt = performance.now();
  } catch (err) {
    d.log.error({ pid, err }, 'restore on the new GPU failed; restoring on the old one');
    await release(copies);
    await restoreImage(d, dir, report, { regions: old });
    throw new PhosError('DRIVER_FAILED', `pid ${pid} could not be restored on GPU ${toGpu} (${(err as Error).message}); it runs on GPU ${fromGpu} again`, { cause: err, details: { pid, toGpu } });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const downtimeMs = thawedAt - frozenAt;
  await release(old); // the restored app holds the copies; the old GPU's memory goes
  const bytes = copies.reduce((s, a) => s + a.size, 0);
  d.log.info({ pid, fromGpu, toGpu, bytes, downtimeMs: Math.round(downtimeMs), copyMs: Math.round(copyMs) }, 'moved to another GPU');
  return { pid, fromGpu, toGpu, bytes, downtimeMs, copyMs, totalMs: performance.now() - t0 };
}
