// image.stageDir: a pre-dump's CRIU image is written to the stage while the app is frozen, loses its zero
// pages there (image.trimZeroPages) and moves into the image after the thaw. The moved image must be whole: restoring it (after killing the app) brings
// the app back from the pre-dump point to its reference checksum, and the stage is left empty.
import { afterEach, beforeEach, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { referenceChecksum, waitForLog, workloadPath } from '../helpers/workload.ts';
import { appGone, startAgent, type AgentHandle } from './agent-harness.ts';

const ARGS = ['--mib', '32', '--steps', '250', '--step-ms', '20'];
let agent: AgentHandle;
let stage: string;
beforeEach(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'phos-stage-'));
  stage = join(dir, 'stage');
  mkdirSync(stage);
  writeFileSync(join(dir, 'agent.yaml'), `image:\n  stageDir: ${stage}\n`);
  agent = await startAgent('29800-29899', { PHOS_AGENT_CONFIG: join(dir, 'agent.yaml') });
});
afterEach(async () => { await agent.stop(); });

it('a staged pre-dump moves its CRIU image into the image dir; that image restores to the reference checksum', async () => {
  const expected = referenceChecksum('counter', ARGS);
  const { pid, logPath } = await agent.run([workloadPath('counter'), ...ARGS], 'ctr');
  await waitForLog(logPath, (l) => l.steps.length >= 5);
  const img = join(agent.dir, 'img');
  const r = await agent.phosJson<{ result: { path: string } }>(['pre-dump', '--pid', String(pid), '--dir', img]);
  expect(r.code, `${JSON.stringify(r.last)} ${r.stderr}`).toBe(0);
  expect(r.lines.some((l) => l.t === 'progress' && l.phase === 'move-criu')).toBe(true);
  expect(readdirSync(stage), 'the stage is empty once the image is sealed').toEqual([]);
  const criu = readdirSync(join(img, 'criu'));
  expect(criu.some((f) => /^pages-\d+\.img$/.test(f))).toBe(true);
  expect(criu).toContain('dump.log');
  // Zero pages were left out in the stage, before the move (image.trimZeroPages, on by default).
  expect(r.lines.some((l) => l.t === 'progress' && l.phase === 'trim-criu')).toBe(true);
  expect(agent.agentLog()).toMatch(/"zeroPagesLeftOut":[1-9]\d*.*CRIU image: zero pages left out/);

  process.kill(pid, 'SIGKILL');
  expect(await appGone(pid)).toBe(true);
  const t = await agent.phos(['restore', '--dir', img]);
  expect(t.code, t.stderr).toBe(0);
  const final = await waitForLog(logPath, (l) => l.checksum !== null || l.steps.some((s) => !s.ok), 60_000);
  expect(final.steps.every((s) => s.ok)).toBe(true);
  expect(final.checksum).toBe(expected);
  expect(readFileSync(join(img, 'manifest.json'), 'utf8')).toContain('"pre-dump"');
}, 120_000);
