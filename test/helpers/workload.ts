// Runs the native workloads (native/workloads) and reads their stdout protocol: `ready`, `step N t MS
// ok|BAD`, `checksum HEX` (see native/workloads/README.md).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WORKLOADS_DIR, cudasimEnv } from './paths.ts';

export const WORKLOADS = ['counter', 'streams', 'vmm-grow', 'ptr-chase'] as const;
export type Workload = (typeof WORKLOADS)[number];

export function workloadPath(name: Workload): string {
  const p = join(WORKLOADS_DIR, name);
  if (!existsSync(p)) throw new Error(`workload ${name} is not built (${p}); run: bash deploy/install.sh`);
  return p;
}

/** The checksum the workload's pure-CPU model gives for these arguments. */
export function referenceChecksum(name: Workload, args: string[]): string {
  const out = execFileSync(workloadPath(name), [...args, '--reference'], { env: cudasimEnv(), encoding: 'utf8' });
  const m = /^checksum ([0-9a-f]{16})$/m.exec(out);
  if (!m) throw new Error(`${name} --reference printed no checksum:\n${out}`);
  return m[1]!;
}

export interface WorkloadLog {
  ready: boolean;
  steps: { n: number; t: number; ok: boolean }[];
  checksum: string | null;
}

export function parseWorkloadLog(text: string): WorkloadLog {
  const log: WorkloadLog = { ready: false, steps: [], checksum: null };
  for (const line of text.split('\n')) {
    if (line === 'ready') log.ready = true;
    const s = /^step (\d+) t ([\d.]+) (ok|BAD)$/.exec(line);
    if (s) log.steps.push({ n: Number(s[1]), t: Number(s[2]), ok: s[3] === 'ok' });
    const c = /^checksum ([0-9a-f]{16})$/.exec(line);
    if (c) log.checksum = c[1]!;
  }
  return log;
}

export function readWorkloadLog(path: string): WorkloadLog {
  return parseWorkloadLog(existsSync(path) ? readFileSync(path, 'utf8') : '');
}

/** Polls a log file until `pred` holds; throws with the log's tail on timeout. */
export async function waitForLog(path: string, pred: (l: WorkloadLog) => boolean, timeoutMs = 30_000): Promise<WorkloadLog> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const l = readWorkloadLog(path);
    if (pred(l)) return l;
    if (Date.now() > deadline) {
      const tail = existsSync(path) ? readFileSync(path, 'utf8').split('\n').slice(-8).join('\n') : '(no log)';
      throw new Error(`timed out after ${timeoutMs} ms waiting on ${path}; last lines:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Steps must be 1..n without gaps or repeats beyond one re-run step, and all ok. */
export function assertContinuous(l: WorkloadLog): void {
  let expect = 1;
  for (const s of l.steps) {
    if (!s.ok) throw new Error(`step ${s.n} reported BAD`);
    if (s.n !== expect) throw new Error(`step ${s.n} follows step ${expect - 1}: the run did not continue where it stopped`);
    expect++;
  }
}
