// The two-node mesh of the migration tests: phos's own local mesh (common/src/local-mesh.ts, behind phos
// demo) on cudasim, in a temp directory that stop() removes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalMesh, type LocalMesh, type LocalNode } from '../../common/src/index.ts';
import { CUDASIM_DIR } from '../helpers/paths.ts';

export type MeshNode = LocalNode;
export type Mesh = LocalMesh & { dir: string };

export async function startMesh(names: [string, string] = ['node-a', 'node-b']): Promise<Mesh> {
  const dir = mkdtempSync(join(tmpdir(), 'phos-mesh-'));
  try {
    const m = await startLocalMesh({ nodes: names, dir, simDir: CUDASIM_DIR, pidBase: 28000, runDir: '/run/phos-mesh', env: { PHOS_LOG_LEVEL: 'info' } });
    return { ...m, dir, stop: async () => { await m.stop(); rmSync(dir, { recursive: true, force: true, maxRetries: 5 }); } };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    throw err;
  }
}
