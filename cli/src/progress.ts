// Progress of a checkpoint or restore: a bar on a TTY (phase, bytes, rate, ETA), --json line events
// otherwise (one JSON object per agent event on stdout), nothing with --quiet.
import { formatBytes } from './output.ts';
import type { StreamEvent } from './agent-client.ts';

export interface ProgressView {
  onEvent(e: StreamEvent): void;
  done(): void;
}

export function progressView(mode: { json: boolean; tty: boolean }): ProgressView {
  if (mode.json) return { onEvent: (e) => { if (e.t !== 'log') process.stdout.write(JSON.stringify(e) + '\n'); }, done: () => {} };
  if (!mode.tty) return { onEvent: () => {}, done: () => {} };
  let line = '';
  let rateFrom: { at: number; bytes: number; phase: string } | null = null;
  const draw = (s: string) => { line = s; process.stderr.write(`\r\x1b[K${s}`); };
  return {
    onEvent: (e) => {
      if (e.t !== 'progress') return;
      if (!rateFrom || rateFrom.phase !== e.phase) rateFrom = { at: e.elapsedMs, bytes: e.bytesDone, phase: e.phase };
      if (e.bytesTotal === 0) { draw(`${e.phase.padEnd(14)} ${(e.elapsedMs / 1000).toFixed(1)} s`); return; }
      const frac = Math.min(1, e.bytesDone / e.bytesTotal);
      const width = 24;
      const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
      const dt = (e.elapsedMs - rateFrom.at) / 1000;
      const rate = dt > 0 ? (e.bytesDone - rateFrom.bytes) / dt : 0;
      const eta = rate > 0 ? (e.bytesTotal - e.bytesDone) / rate : 0;
      draw(`${e.phase.padEnd(14)} [${bar}] ${formatBytes(e.bytesDone)}/${formatBytes(e.bytesTotal)} ${formatBytes(rate)}/s eta ${eta.toFixed(1)} s`);
    },
    done: () => { if (line) process.stderr.write('\r\x1b[K'); },
  };
}
