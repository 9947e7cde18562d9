// phos's CRIU patch (deploy/criu/restore-thp-fill.patch): a restore reads a dense anonymous VMA into
// transparent huge pages and leaves it MADV_NOHUGEPAGE ("nh"); a sparse one stays as it was. Under a THP
// mode other than "madvise" the patch must change nothing. Either way the memory comes back bit-exact.
import { describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { criuDump, criuRestore, launch } from '../../services/node-agent/src/index.ts';
import { scratch } from '../helpers/scratch.ts';

// A 48 MiB private anonymous buffer full of random bytes (dense), a 64 MiB one with one page touched
// (sparse; MAP_NORESERVE so that the kernel does not merge the two into one VMA); SIGUSR1 prints the dense one's hash again.
const APP = `
import ctypes, hashlib, mmap, os, signal, sys, time
dense = mmap.mmap(-1, 48 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
dense.write(os.urandom(48 << 20))
sparse = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, 'MAP_NORESERVE', 0x4000))
sparse[4096:4100] = b'phos'
addr = lambda m: ctypes.addressof(ctypes.c_char.from_buffer(m))
signal.signal(signal.SIGUSR1, lambda *_: print('check', hashlib.sha256(dense).hexdigest(), flush=True))
print('ready', hashlib.sha256(dense).hexdigest(), addr(dense), addr(sparse), flush=True)
while True: time.sleep(0.05)
`;

interface Vma { start: number; anonHugeKiB: number; flags: string[] }

/** The smaps entry of the mapping that contains addr. */
function vmaAt(pid: number, addr: number): Vma {
  const blocks = readFileSync(`/proc/${pid}/smaps`, 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/);
  for (const b of blocks) {
    const [lo, hi] = b.slice(0, b.indexOf(' ')).split('-').map((h) => parseInt(h, 16)) as [number, number];
    if (addr < lo || addr >= hi) continue;
    return { start: lo, anonHugeKiB: Number(/AnonHugePages:\s+(\d+)/.exec(b)?.[1]), flags: /VmFlags:(.*)/.exec(b)?.[1]?.trim().split(/\s+/) ?? [] };
  }
  throw new Error(`no mapping of ${pid} holds ${addr.toString(16)}`);
}

async function line(log: string, prefix: string): Promise<string[]> {
  for (let i = 0; i < 200; i++) {
    const l = readFileSync(log, 'utf8').split('\n').find((x) => x.startsWith(prefix));
    if (l) return l.split(' ');
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no '${prefix}' line in ${log}: ${readFileSync(log, 'utf8')}`);
}

const tracked = scratch();

describe('CRIU restore with phos huge-page fill', () => {
  it('restores a dense anonymous VMA into huge pages (THP "madvise"), leaves a sparse one alone, and the bytes are exact', async () => {
    const dir = tracked.dir('phos-thp-');
    const script = join(dir, 'app.py');
    const log = join(dir, 'app.log');
    writeFileSync(script, APP);
    const app = launch({ argv: ['python3', script], logPath: log });
    tracked.pid(app.pid);
    const [, hash, dense, sparse] = await line(log, 'ready ');
    const img = join(dir, 'img');
    mkdirSync(img);
    await criuDump({ pid: app.pid, dir: img });
    await app.exited;

    const { pid } = await criuRestore({ dir: img });
    tracked.pid(pid);
    expect(pid).toBe(app.pid);
    const d = vmaAt(pid, Number(dense));
    const s = vmaAt(pid, Number(sparse));
    expect(d.start).not.toBe(s.start);
    if (readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8').includes('[madvise]')) {
      // Every whole 2 MiB window of the 48 MiB buffer is huge (an unaligned start costs at most one).
      expect(d.anonHugeKiB).toBeGreaterThanOrEqual(46 << 10);
      expect(d.flags).toContain('nh');
      expect(d.flags).not.toContain('hg');
    } else {
      expect(d.flags).not.toContain('nh');
    }
    expect(s.anonHugeKiB).toBe(0);
    expect(s.flags).not.toContain('nh');

    process.kill(pid, 'SIGUSR1');
    expect((await line(log, 'check '))[1]).toBe(hash);
  });
});
