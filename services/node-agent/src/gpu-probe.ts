// The agent's view of its GPUs: native/tools/gpu-probe run against the driver the agent uses (cudasim
// when configured), so the node's registration and the keeper number GPUs the same way.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const BUILT = fileURLToPath(new URL('../../../build/native/tools/gpu-probe', import.meta.url));

export interface ProbedGpu { index: number; name: string; uuid: string; totalBytes: number; freeBytes: number }
export interface GpuProbe { gpus: ProbedGpu[]; driverVersion: number; simulated: boolean; /** Why no GPU was found, when none was. */ error?: string }

/** PHOS_GPU_PROBE, else the one the native build made (a bundled agent sets the variable). */
export function gpuProbePath(): string { return process.env.PHOS_GPU_PROBE ?? BUILT; }

export function probeGpus(libcuda: string | null): Promise<GpuProbe> {
  const env = libcuda ? { ...process.env, LD_LIBRARY_PATH: [dirname(libcuda), process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') } : process.env;
  const probe = gpuProbePath();
  if (!existsSync(probe)) return Promise.resolve({ gpus: [], driverVersion: 0, simulated: false, error: `${probe} is missing (build native/, or set PHOS_GPU_PROBE)` });
  return new Promise((resolve) => {
    execFile(probe, { env, encoding: 'utf8' }, (err, out) => {
      try {
        const p = JSON.parse(out) as { ok: boolean; error?: string; library?: string; driverVersion?: number; devices?: ProbedGpu[] };
        if (!p.ok) throw new Error(p.error ?? 'the probe found no driver');
        const gpus = (p.devices ?? []).sort((a, b) => a.index - b.index);
        resolve({ gpus, driverVersion: p.driverVersion ?? 0, simulated: /cudasim/.test(p.library ?? '') });
      } catch (e) {
        resolve({ gpus: [], driverVersion: 0, simulated: false, error: (err ?? e as Error).message });
      }
    });
  });
}
