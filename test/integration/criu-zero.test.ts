// trimZeroPages on a real CRIU image: a process whose private anonymous memory holds 32 MiB of written
// zero pages (present, so CRIU dumps them) and 8 MiB of data with one zero page inside. The trimmed image
// is at least those 32 MiB smaller, and CRIU restores it: the process goes on with its data's digest and
// its zeros unchanged.
import { expect, it } from 'vitest';
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { criuDump, criuRestore, launch, trimZeroPages } from '../../services/node-agent/src/index.ts';
import { scratch } from '../helpers/scratch.ts';

const APP = `
import hashlib, os, sys, time
a = bytearray(os.urandom(1 << 20)) * 8
a[5 * 4096:6 * 4096] = bytes(4096)
z = bytearray(32 << 20)
for i in range(0, len(z), 4096): z[i] = 1
for i in range(0, len(z), 4096): z[i] = 0
print("ready", hashlib.sha256(a).hexdigest()[:16], flush=True)
while True:
    time.sleep(0.1)
    print("tick", hashlib.sha256(a).hexdigest()[:16], z.count(0) == len(z), flush=True)
`;

const tracked = scratch();

async function lines(log: string, pred: (ls: string[]) => boolean, ms = 20_000): Promise<string[]> {
  for (const end = Date.now() + ms; ;) {
    const ls = readFileSync(log, 'utf8').split('\n').filter(Boolean);
    if (pred(ls)) return ls;
    if (Date.now() > end) throw new Error(`log: ${ls.slice(-5).join(' | ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

it('leaves written zero pages of anonymous memory out of a CRIU image; the image still restores exactly', async () => {
  const dir = tracked.dir('phos-zero-');
  const log = join(dir, 'app.log');
  const img = join(dir, 'img');
  const app = launch({ argv: ['python3', '-c', APP], logPath: log });
  tracked.pid(app.pid);
  const ready = (await lines(log, (ls) => ls.some((l) => l.startsWith('ready'))))[0]!.split(' ')[1]!;
  mkdirSync(img);
  await criuDump({ pid: app.pid, dir: img });
  const pagesFile = () => readdirSync(img).find((f) => /^pages-\d+\.img$/.test(f))!;
  const before = statSync(join(img, pagesFile())).size;

  const t = await trimZeroPages(img);
  expect(t.skipped, JSON.stringify(t)).toBeNull();
  expect(t.pagesBefore - t.pagesAfter).toBeGreaterThanOrEqual((32 << 20) / 4096 + 1);
  expect(before - statSync(join(img, pagesFile())).size).toBe((t.pagesBefore - t.pagesAfter) * 4096);

  const ticksAtDump = readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('tick')).length;
  const { pid } = await criuRestore({ dir: img });
  expect(pid).toBe(app.pid);
  const after = (await lines(log, (ls) => ls.filter((l) => l.startsWith('tick')).length >= ticksAtDump + 3)).filter((l) => l.startsWith('tick')).slice(ticksAtDump);
  for (const l of after) expect(l).toBe(`tick ${ready} True`);
}, 60_000);
