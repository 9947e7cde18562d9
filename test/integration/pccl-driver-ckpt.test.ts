// The driver's process checkpoint calls through pccl, against a cudasim process: lock blocks its CUDA
// calls until unlock, a full lock -> checkpoint -> restore -> unlock cycle keeps its device memory, and
// illegal moves come back as DRIVER_FAILED naming the CUDA error and the pid.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as pccl from '../../native/pccl/pccl.ts';
import { ADDON_PATH } from '../../native/pccl/pccl.ts';
import { compileC } from '../../native/pccl/test/support.ts';
import { CUDASIM_DIR, cudasimEnv } from '../helpers/paths.ts';
import { rejection } from '../helpers/expect.ts';

let target: ChildProcessByStdio<Writable, Readable, null>;
let pid: number;
let lines: string[] = [];
let waiters: ((line: string) => void)[] = [];

/** The target's next stdout line, or null when none comes within `ms`. */
function nextLine(ms: number): Promise<string | null> {
  const have = lines.shift();
  if (have !== undefined) return Promise.resolve(have);
  return new Promise((resolve) => {
    const w = (line: string): void => {
      clearTimeout(timer);
      resolve(line);
    };
    const timer = setTimeout(() => {
      waiters = waiters.filter((x) => x !== w);
      resolve(null);
    }, ms);
    waiters.push(w);
  });
}

beforeAll(async () => {
  expect(existsSync(ADDON_PATH), `pccl addon missing at ${ADDON_PATH}: run bash deploy/install.sh`).toBe(true);
  const lib = join(CUDASIM_DIR, 'libcuda.so.1');
  expect(existsSync(lib), `cudasim missing at ${lib}: run bash deploy/install.sh`).toBe(true);
  process.env.PHOS_LIBCUDA = lib;
  const bin = compileC('ckpt-target', ['-I/usr/local/cuda/include', `-L${CUDASIM_DIR}`, '-lcuda']);
  target = spawn(bin, [], { env: cudasimEnv(), stdio: ['pipe', 'pipe', 'inherit'] });
  pid = target.pid!;
  let buf = '';
  target.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  expect(await nextLine(10_000)).toBe('ready');
});

afterAll(async () => {
  target.stdin.end();
  await new Promise((r) => target.once('close', r));
  lines = [];
});

describe('pccl driver checkpoint (cudasim)', () => {
  it('names the restore thread of a running process', async () => {
    expect((await pccl.driverState(pid)).state).toBe('running');
    const { tid } = await pccl.restoreThreadId(pid);
    expect(tid).toBeGreaterThan(0);
    expect(existsSync(`/proc/${pid}/task/${tid}`)).toBe(true);
  });

  it('blocks the process in CUDA calls between lock and unlock', async () => {
    const locked = await pccl.driverCheckpoint('lock', pid, 5000);
    expect(locked.ms).toBeGreaterThanOrEqual(0);
    expect((await pccl.driverState(pid)).state).toBe('locked');
    target.stdin.write('check\n');
    expect(await nextLine(500)).toBeNull(); // its cuMemcpyDtoH waits on the lock
    await pccl.driverCheckpoint('unlock', pid);
    expect(await nextLine(5000)).toBe('ok');
    expect((await pccl.driverState(pid)).state).toBe('running');
  });

  it('runs a whole lock, checkpoint, restore, unlock cycle with the device memory intact', async () => {
    await pccl.driverCheckpoint('lock', pid);
    await pccl.driverCheckpoint('checkpoint', pid);
    expect((await pccl.driverState(pid)).state).toBe('checkpointed');
    await pccl.driverCheckpoint('restore', pid);
    expect((await pccl.driverState(pid)).state).toBe('locked');
    await pccl.driverCheckpoint('unlock', pid);
    expect((await pccl.driverState(pid)).state).toBe('running');
    target.stdin.write('check\n');
    expect(await nextLine(5000)).toBe('ok');
  });

  it('reports an illegal move as DRIVER_FAILED with the CUDA error name and the pid', async () => {
    const err = await rejection(pccl.driverCheckpoint('unlock', pid));
    expect(err.code).toBe('DRIVER_FAILED');
    expect(err.details.cudaError).toBe('CUDA_ERROR_ILLEGAL_STATE');
    expect(err.details.pid).toBe(pid);
    expect(err.message).toContain('cuCheckpointProcessUnlock');
    expect(err.message).toContain('CUDA_ERROR_ILLEGAL_STATE');
    expect(err.message).toContain(`pid ${pid}`);
    expect((await pccl.driverState(pid)).state).toBe('running'); // untouched
  });

  it('refuses a process that is not using CUDA, and bad arguments before reaching the driver', async () => {
    const plain = spawn('sleep', ['30']);
    try {
      const err = await rejection(pccl.driverState(plain.pid!));
      expect(err.code).toBe('DRIVER_FAILED');
      expect(err.message).toContain(`pid ${plain.pid}`);
    } finally {
      plain.kill();
    }
    await expect(pccl.driverCheckpoint('toggle' as never, pid)).rejects.toMatchObject({ code: 'BAD_ARGS' });
    await expect(pccl.driverState(0)).rejects.toMatchObject({ code: 'BAD_ARGS' });
  });
});
