// The two-node mesh of the migration tests: phos's own local mesh (common/src/local-mesh.ts, behind phos
// demo) on cudasim, in a temp directory that stop() removes; and the CLI calls those tests make on it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalMesh, type LocalMesh, type LocalNode } from '../../common/src/index.ts';
import { CUDASIM_DIR } from '../helpers/paths.ts';
import { workloadPath, type Workload } from '../helpers/workload.ts';

export type MeshNode = LocalNode;
export type Mesh = LocalMesh & { dir: string };

/** Each test file its own pid range and libphos socket dir, so two files can run at once. */
export interface MeshOptions { pidBase?: number; runDir?: string; env?: NodeJS.ProcessEnv }

export async function startMesh(names: [string, string] = ['node-a', 'node-b'], o: MeshOptions = {}): Promise<Mesh> {
  const dir = mkdtempSync(join(tmpdir(), 'phos-mesh-'));
  try {
    const m = await startLocalMesh({
      nodes: names, dir, simDir: CUDASIM_DIR, pidBase: o.pidBase ?? 28000, runDir: o.runDir ?? '/run/phos-mesh', env: { PHOS_LOG_LEVEL: 'info', ...o.env },
    });
    return { ...m, dir, stop: async () => { await m.stop(); rmSync(dir, { recursive: true, force: true, maxRetries: 5 }); } };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    throw err;
  }
}

/** `phos run` of a workload on a node: its pid and log. */
export async function runOn(mesh: Mesh, node: MeshNode, w: Workload, args: string[]): Promise<{ pid: number; logPath: string }> {
  const r = await mesh.phos(['run', '--json', '--', workloadPath(w), ...args], node);
  if (r.code !== 0) throw new Error(`phos run failed (${r.code}): ${r.stderr}`);
  return (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { process: { pid: number; logPath: string } }).process;
}

export interface MeshProcess { pid: number; state: string; gpus?: string[]; keptBytesByGpu?: number[] }

/** `phos ps` on a node. */
export async function processesOn(mesh: Mesh, node: MeshNode): Promise<MeshProcess[]> {
  const r = await mesh.phos(['ps', '--json'], node);
  return (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { processes: MeshProcess[] }).processes;
}

/** The source agent's last `cutover: final round` line for pid (chunks, re-hashed, sent, post-copy). */
export function finalRound(node: MeshNode, pid: number): { chunks: number; rehashed: number; sent: number; postcopy: number } | undefined {
  return node.log().split('\n').filter((l) => l.includes('cutover: final round') && l.includes(`"pid":${pid}`))
    .map((l) => JSON.parse(l) as { chunks: number; rehashed: number; sent: number; postcopy: number }).at(-1);
}
