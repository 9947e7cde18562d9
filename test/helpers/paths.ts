// Where the built native parts live, and the environment that makes a program load cudasim.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const NATIVE_BUILD = join(ROOT, 'build', 'native');
export const CUDASIM_DIR = join(NATIVE_BUILD, 'cudasim');
export const LIBPHOS = join(NATIVE_BUILD, 'hijack', 'libphos.so');
export const WORKLOADS_DIR = join(NATIVE_BUILD, 'workloads');
export const CRIU = process.env.PHOS_CRIU ?? '/usr/local/sbin/criu';
export const CKPT_CTL = join(NATIVE_BUILD, 'tools', 'ckpt-ctl');

/** Environment for a child that should run on the simulated GPU. */
export function cudasimEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  if (!existsSync(join(CUDASIM_DIR, 'libcuda.so.1'))) throw new Error(`cudasim is not built (${CUDASIM_DIR}); run: bash deploy/install.sh`);
  const ld = [CUDASIM_DIR, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':');
  return { ...process.env, LD_LIBRARY_PATH: ld, ...extra };
}
