// placeGpus (node agent restore): where an image's GPUs land on this node, by UUID, with or without a
// --gpu-map, and which maps are refused before anything runs.
import { describe, expect, it } from 'vitest';
import { placeGpus } from '../../services/node-agent/src/index.ts';
import { PhosError } from '../../proto/src/index.ts';

const A = 'GPU-aaaaaaaa-0000-0000-0000-000000000000', B = 'GPU-bbbbbbbb-0000-0000-0000-000000000000', C = 'GPU-cccccccc-0000-0000-0000-000000000000';
type Keeper = Parameters<typeof placeGpus>[0];
type ImageManifest = Parameters<typeof placeGpus>[1];
const node = (gpus: string[]) => ({ agentGpus: async () => gpus }) as unknown as Keeper;
const image = (gpus?: string[]) => ({ gpus }) as unknown as ImageManifest;

async function refusal(p: Promise<unknown>): Promise<string> {
  try { await p; } catch (e) { expect(e).toBeInstanceOf(PhosError); expect((e as PhosError).code).toBe('BAD_ARGS'); return (e as Error).message; }
  throw new Error('expected BAD_ARGS');
}

describe('placeGpus', () => {
  it('without a map: each GPU stays itself, found by UUID even when the node numbers it otherwise; no driver pairs', async () => {
    const p = await placeGpus(node([B, A]), image([A, B]), undefined);
    expect([p.gpuOf(0), p.gpuOf(1)]).toEqual([1, 0]);
    expect(p.pairs).toEqual([]);
    const old = await placeGpus(node([A, B]), image(undefined), undefined);
    expect(old.gpuOf(1)).toBe(1); // an image without GPUs: the app's ordinal
  });

  it('0=1 on two GPUs swaps them (the unnamed GPU takes the one left over); pairs cover every GPU', async () => {
    const p = await placeGpus(node([A, B]), image([A, B]), [{ from: 0, to: 1 }]);
    expect([p.gpuOf(0), p.gpuOf(1)]).toEqual([1, 0]);
    expect(p.pairs).toEqual([[A, B], [B, A]]);
  });

  it('an unnamed GPU keeps its own when it is free', async () => {
    const p = await placeGpus(node([A, B, C]), image([A, B]), [{ from: 0, to: 2 }]);
    expect(p.pairs).toEqual([[A, C], [B, B]]);
  });

  it('refuses GPUs neither side has, doubles, and too small a node', async () => {
    expect(await refusal(placeGpus(node([A, B]), image([A, B]), [{ from: 0, to: 5 }]))).toMatch(/this node has no GPU 5/);
    expect(await refusal(placeGpus(node([A, B]), image([A]), [{ from: 3, to: 1 }]))).toMatch(/image has no GPU 3/);
    expect(await refusal(placeGpus(node([A, B]), image([A, B]), [{ from: 0, to: 1 }, { from: 1, to: 1 }]))).toMatch(/two GPUs to GPU 1/);
    expect(await refusal(placeGpus(node([A]), image([A, B]), [{ from: 0, to: 0 }]))).toMatch(/too few/);
    expect(await refusal(placeGpus(node([A, B]), image(undefined), [{ from: 0, to: 1 }]))).toMatch(/does not record its GPUs/);
  });
});
