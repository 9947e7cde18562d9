// The keeper with two GPUs (cudasim, PHOS_SIM_GPUS=2 in this test process, read when pccl first loads the
// driver): memory is made on the device asked for, a copy between regions of two devices is bit-exact
// (the same-node GPU move's peer copy), and driver-restore GPU pairs are checked before any call.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pccl from '../../native/pccl/pccl.ts';
import { chunkHash } from '../../native/pccl/test/support.ts';
import { CUDASIM_DIR } from '../helpers/paths.ts';
import { rejection } from '../helpers/expect.ts';

const SIZE = 4 << 20;
let dir: string;

beforeAll(() => {
  const lib = join(CUDASIM_DIR, 'libcuda.so.1');
  expect(existsSync(lib), `cudasim missing at ${lib}: run bash deploy/install.sh`).toBe(true);
  process.env.PHOS_LIBCUDA = lib;
  process.env.PHOS_SIM_GPUS = '2';
  dir = mkdtempSync(join(tmpdir(), 'pccl-mgpu-'));
});

afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

describe('pccl keeper on two GPUs (cudasim)', () => {
  it('makes memory on the device asked for and copies between devices bit-exact', async () => {
    const data = randomBytes(SIZE);
    const src = join(dir, 'src');
    writeFileSync(src, data);
    const on1 = await pccl.keeperSpare(SIZE, 1);
    const on0 = await pccl.keeperSpare(SIZE); // default: device 0
    expect(on1.device).toBe(1);
    expect(on0.device).toBe(0);
    try {
      await pccl.readChunks({ dst: on1.id, items: [{ offset: 0, length: SIZE, path: src, hash: chunkHash(data) }] });
      await pccl.keeperCopy(on0.id, 0, on1.id, 0, SIZE);
      const out = join(dir, 'out');
      const w = await pccl.writeChunks({ src: on0.id, items: [{ offset: 0, length: SIZE, path: out }], fsync: false });
      expect(w.hashes[0]).toBe(chunkHash(data));
      expect(readFileSync(out).equals(data)).toBe(true);
    } finally {
      await pccl.keeperRelease(on1.id);
      await pccl.keeperRelease(on0.id);
    }
  });

  it('refuses a device the driver does not have, and malformed GPU pairs, naming them', async () => {
    const e = await rejection(pccl.keeperSpare(SIZE, 3));
    expect(e.code).toBe('DRIVER_FAILED');
    expect(e.message).toMatch(/device 3/);
    const bad = await rejection(pccl.driverCheckpoint('restore', process.pid, 0, [['GPU-nothex', 'GPU-00000000-0000-0000-0000-000000000000']]));
    expect(bad.code).toBe('BAD_ARGS');
    expect(bad.message).toMatch(/GPU-nothex/);
    expect((await rejection(pccl.driverCheckpoint('lock', process.pid, 0, [['a', 'b']]))).code).toBe('BAD_ARGS');
  });
});
