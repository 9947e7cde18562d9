// Which CUDA driver the local commands that start an agent use: NVIDIA's when gpu-probe can load it,
// else cudasim from this checkout's build (the embedded default on machines without a GPU).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PhosError } from '../../proto/src/index.ts';

const BUILD = fileURLToPath(new URL('../../build/native', import.meta.url));

/** cudasim's directory when no NVIDIA driver loads, else null; throws when neither is there. */
export function simulatedDriverDir(): string | null {
  try {
    const out = execFileSync(join(BUILD, 'tools', 'gpu-probe'), { encoding: 'utf8' });
    if ((JSON.parse(out) as { ok: boolean }).ok) return null;
  } catch { /* no probe output: fall through to the simulator */ }
  const sim = join(BUILD, 'cudasim');
  if (!existsSync(join(sim, 'libcuda.so.1'))) throw new PhosError('DRIVER_FAILED', 'no NVIDIA driver and cudasim is not built', { remedy: 'bash deploy/install.sh' });
  return sim;
}
