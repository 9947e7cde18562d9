// Several "hosts" on one machine (multi-host tests, `phos demo`): one network namespace per host, all
// joined by veth pairs to a bridge that lives in its own namespace, so the machine's own network is never
// touched. Teardown deletes every namespace it made; it runs from the caller and again at process exit,
// and makeHosts first sweeps namespaces left by processes that have died.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface Host {
  /** Index 0..n-1. */
  index: number;
  /** Network namespace name (usable with `ip netns exec`). */
  ns: string;
  /** IPv4 address of the host inside the test network. */
  addr: string;
}

export interface Hosts {
  hosts: Host[];
  /** argv prefix that runs a command inside a host's namespace. */
  wrap(host: Host): string[];
  /** Runs a command inside a host's namespace and returns its stdout. */
  exec(host: Host, cmd: string, args?: string[]): string;
  /** Spawns a long-running process inside a host's namespace. */
  spawn(host: Host, cmd: string, args?: string[], opts?: SpawnOptions): ChildProcess;
  /** Deletes every namespace (idempotent). */
  destroy(): void;
}

const PREFIX = 'phost';

/** Why multi-host tests cannot run here, or null when they can. */
export function hostsUnavailable(): string | null {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'several hosts on one machine need root (network namespaces); run as root';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return "'ip' (iproute2) is not installed; run: bash deploy/install.sh";
  }
  return null;
}

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** Deletes namespaces of earlier test processes that died before their teardown ran. */
export function sweepStaleHosts(): string[] {
  const removed: string[] = [];
  for (const line of ip(['netns', 'list']).split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${PREFIX}-(\\d+)-`).exec(name);
    if (m && !pidAlive(Number(m[1]))) {
      try { ip(['netns', 'del', name]); removed.push(name); } catch { /* already gone */ }
    }
  }
  return removed;
}

const live = new Set<() => void>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => { for (const d of live) d(); });
}

export function makeHosts(n: number): Hosts {
  const why = hostsUnavailable();
  if (why) throw new Error(why);
  if (n < 1 || n > 200) throw new Error(`makeHosts: n must be 1..200, got ${n}`);
  sweepStaleHosts();
  const id = randomBytes(2).toString('hex');
  const tag = `${PREFIX}-${process.pid}-${id}`;
  const sw = `${tag}-sw`;
  // A /24 chosen per run inside 10.200.0.0/16: namespaces are isolated, so this never meets real routes.
  const net = `10.200.${randomBytes(1)[0]! % 250}`;
  const made: string[] = [];
  const destroy = () => {
    for (const ns of made.splice(0).reverse()) {
      try { ip(['netns', 'del', ns]); } catch { /* already gone */ }
    }
    live.delete(destroy);
  };
  live.add(destroy);
  installExitHook();
  try {
    ip(['netns', 'add', sw]); made.push(sw);
    ip(['-n', sw, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', sw, 'link', 'set', 'br0', 'up']);
    const hosts: Host[] = [];
    for (let i = 0; i < n; i++) {
      const ns = `${tag}-h${i}`;
      ip(['netns', 'add', ns]); made.push(ns);
      // Create the pair inside the host namespace, then move the peer end to the switch.
      ip(['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `p${i}`]);
      ip(['-n', ns, 'link', 'set', `p${i}`, 'netns', sw]);
      ip(['-n', sw, 'link', 'set', `p${i}`, 'master', 'br0']);
      ip(['-n', sw, 'link', 'set', `p${i}`, 'up']);
      const addr = `${net}.${i + 1}`;
      ip(['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
      ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      hosts.push({ index: i, ns, addr });
    }
    const wrap = (h: Host) => ['ip', 'netns', 'exec', h.ns];
    return {
      hosts,
      wrap,
      exec: (h, cmd, args = []) => execFileSync('ip', ['netns', 'exec', h.ns, cmd, ...args], { encoding: 'utf8' }),
      spawn: (h, cmd, args = [], opts = {}) => spawn('ip', ['netns', 'exec', h.ns, cmd, ...args], opts),
      destroy,
    };
  } catch (err) {
    destroy();
    throw err;
  }
}
