// `npm run bench -- NAME [ARGS...]` runs bench/NAME.ts: each benchmark module exports
// `main(args): Promise<void>`, prints its table on stdout and writes bench/results/NAME.json itself.
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const [name, ...args] = process.argv.slice(2);
// plot.ts is a library of report.ts, not a benchmark.
const known = readdirSync(here).filter((f) => f.endsWith('.ts') && f !== 'run.ts' && f !== 'plot.ts').map((f) => f.slice(0, -3));
if (!name || !/^[a-z0-9-]+$/.test(name) || !existsSync(`${here}${name}.ts`)) {
  console.error(`usage: npm run bench -- NAME   (NAME: ${known.join(', ') || 'none yet'})`);
  process.exit(2);
}
const mod = (await import(`./${name}.ts`)) as { main?: (args: string[]) => Promise<void> };
if (typeof mod.main !== 'function') {
  console.error(`bench/${name}.ts exports no main(args)`);
  process.exit(2);
}
await mod.main(args);
