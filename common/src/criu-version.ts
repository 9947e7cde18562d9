// Which criu phos uses and whether it is new enough: shared by the agent (which runs it) and
// `phos doctor` (which reports it). CRIU >= 4.1 is required on kernels >= 6.13 (vDSO vvar_vclock).
import { existsSync } from 'node:fs';

export const CRIU_MIN_VERSION = [4, 1] as const;

/**
 * Where the criu deploy/install.sh builds keeps its kernel-probe cache (compiled in as its RUNDIR; keep
 * the two equal). CRIU keeps the cache only on tmpfs and by default in /run, which is not tmpfs where no
 * systemd runs: there every dump and restore re-probed the kernel, ~40 ms each, inside the app's stall.
 */
export const CRIU_KDAT_DIR = '/dev/shm/phos-criu';
/**
 * A string every build with phos's restore patch (deploy/criu/restore-thp-fill.patch) holds; install.sh
 * checks for its current version ("phos-thp-fill v2"), phos doctor for any.
 */
export const CRIU_THP_PATCH_MARKER = 'phos-thp-fill';

/** explicit, else PHOS_CRIU, else /usr/local/sbin/criu (where deploy/install.sh puts it), else PATH. */
export function criuBinary(explicit?: string): string {
  return explicit ?? process.env.PHOS_CRIU ?? (existsSync('/usr/local/sbin/criu') ? '/usr/local/sbin/criu' : 'criu');
}

/** Reads `criu --version` output: the version string and whether it meets CRIU_MIN_VERSION; null when absent. */
export function parseCriuVersion(out: string): { version: string; ok: boolean } | null {
  const m = /Version:\s*(\d+)\.(\d+)(\.\d+)?/.exec(out);
  if (!m) return null;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  const ok = maj > CRIU_MIN_VERSION[0] || (maj === CRIU_MIN_VERSION[0] && min >= CRIU_MIN_VERSION[1]);
  return { version: `${m[1]}.${m[2]}${m[3] ?? ''}`, ok };
}
