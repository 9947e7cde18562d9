// What the agent reads about a process from /proc: memory figures from status, and its children.
import { readdirSync, readFileSync } from 'node:fs';

/** A `<field>: N kB` line of /proc/PID/status in bytes (VmRSS, VmSwap, RssAnon...), or null when unreadable. */
export function statusBytes(pid: number, field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** The child processes of pid ('self': this one), as the kernel lists them per thread (CRIU needs the same list). */
export function childrenOf(pid: number | 'self'): number[] {
  const out: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try { out.push(...readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(' ').filter(Boolean).map(Number)); } catch { /* thread gone */ }
    }
  } catch { /* process gone */ }
  return out;
}
