import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CRIU_THP_PATCH_MARKER, criuBinary } from '../../common/src/index.ts';
import { ROOT } from '../helpers/paths.ts';

const PHOS = join(ROOT, 'bin', 'phos');

function phos(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(PHOS, args, { env: { ...process.env, ...env }, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
  });
}

interface DoctorJson { ok: boolean; checks: { name: string; status: string; detail: string; fix?: string }[] }

describe('phos doctor', () => {
  it('passes on this installed machine and reports CRIU >= 4.1, NATS and a driver with the checkpoint API', async () => {
    const r = await phos(['doctor', '--json']);
    const out = JSON.parse(r.stdout) as DoctorJson;
    const failed = out.checks.filter((c) => c.status === 'fail');
    expect(failed, JSON.stringify(failed)).toEqual([]);
    expect(r.code).toBe(0);
    const names = out.checks.map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining(['criu', 'kernel', 'nats', 'driver', 'memory']));
    expect(out.checks.find((c) => c.name === 'criu')!.detail).toMatch(/criu 4\.\d+/);
    // As root the whole criu check runs: install.sh's build has the kernel-probe cache and phos's patch.
    if (process.getuid?.() === 0) expect(out.checks.find((c) => c.name === 'criu')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/restore patch in/) });
    expect(out.checks.find((c) => c.name === 'driver')!.detail).toMatch(/checkpoint API present/);
    expect(names.some((n) => n.startsWith('gpu'))).toBe(true);
  });

  it('exits 1 and names the fix when criu is the old 3.17', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'phos-oldcriu-'));
    const fake = join(dir, 'criu');
    writeFileSync(fake, '#!/bin/sh\necho "Version: 3.17.1"\n');
    chmodSync(fake, 0o755);
    const r = await phos(['doctor'], { PHOS_CRIU: fake });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/criu\s+fail\s+criu 3\.17\.1 found .*phos needs >= 4\.1/);
    expect(r.stdout).toMatch(/fix criu: bash deploy\/install\.sh/);
    const j = JSON.parse((await phos(['doctor', '--json'], { PHOS_CRIU: fake })).stdout) as DoctorJson;
    expect(j.ok).toBe(false);
    expect(j.checks.find((c) => c.name === 'criu')).toMatchObject({ status: 'fail', fix: 'bash deploy/install.sh' });
  });

  it.runIf(process.getuid?.() === 0)('warns, naming the fix, when criu lacks phos\'s restore patch', async () => {
    // The installed criu with its patch marker overwritten (same length): it runs and checks as before.
    const dir = mkdtempSync(join(tmpdir(), 'phos-stockcriu-'));
    const copy = join(dir, 'criu');
    const bytes = readFileSync(criuBinary());
    const marker = Buffer.from(CRIU_THP_PATCH_MARKER);
    for (let at = bytes.indexOf(marker); at >= 0; at = bytes.indexOf(marker, at + 1)) bytes.fill('x', at, at + marker.length);
    writeFileSync(copy, bytes, { mode: 0o755 });
    const j = JSON.parse((await phos(['doctor', '--json'], { PHOS_CRIU: copy })).stdout) as DoctorJson;
    expect(j.checks.find((c) => c.name === 'criu')).toMatchObject({ status: 'warn', detail: expect.stringMatching(/without phos's restore patch/), fix: expect.stringMatching(/restore-thp-fill\.patch/) });
  });

  it('rejects unknown options with a usage error', async () => {
    const r = await phos(['doctor', '--frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/error BAD_ARGS: .*frobnicate/);
    expect(r.stderr).toMatch(/remedy: phos doctor --help/);
  });
});
