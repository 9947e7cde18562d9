// How the CLI talks to people and scripts: results on stdout (a table, or JSON with --json), errors on
// stderr as `error CODE: message` + `remedy: ...`, exit status from proto's error table.
import { PhosError, toPhosError } from '../../proto/src/index.ts';

export function renderTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') + '\n';
}

export function printError(err: unknown, json: boolean): number {
  const e = err instanceof PhosError ? err : toPhosError(err);
  if (json) process.stdout.write(JSON.stringify({ ok: false, error: e.toWire() }) + '\n');
  else process.stderr.write(`error ${e.code}: ${e.message}\nremedy: ${e.remedy}\n`);
  return e.exitCode;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n, u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}
