// What phos pre-dump and phos dump share: arguments, the progress view, the summary line.
import { resolve } from 'node:path';
import { callAgent, controlSocketPath } from './agent-client.ts';
import { EXIT_HELP, SOCKET_HELP, parse, requireArg, uintArg } from './args.ts';
import { formatBytes } from './output.ts';
import { progressView } from './progress.ts';
import type { CheckpointResult } from '../../proto/src/index.ts';

export const CHECKPOINT_OPTIONS_HELP = `  --pid N        a process started with phos run (else NOT_MANAGED)
  --dir D        image directory: manifest.json, gpu/ (chunk files named by hash), criu/
  --parent D0    an earlier image: chunks whose hash it holds are referenced, not written again
Progress: a bar on a TTY (stderr: phase, bytes, rate, ETA); with --json one line per event, then the result.
${SOCKET_HELP}
${EXIT_HELP}
A failure before the process is released rolls back (the process continues) and removes the partial image.`;

export async function checkpoint(verb: 'pre-dump' | 'dump', argv: string[]): Promise<number> {
  const { values } = parse(verb, argv, { pid: { type: 'string' }, dir: { type: 'string' }, parent: { type: 'string' } });
  const pid = uintArg(verb, 'pid', values.pid);
  const dir = resolve(requireArg(verb, 'dir', values.dir));
  const parent = values.parent ? resolve(values.parent) : null;
  const view = progressView({ json: values.json ?? false, tty: process.stderr.isTTY === true });
  try {
    const r = await callAgent(controlSocketPath(values.socket), verb, { pid, dir, parent }, (e) => view.onEvent(e)) as CheckpointResult;
    view.done();
    if (values.json) process.stdout.write(JSON.stringify({ ok: true, result: r }) + '\n');
    else {
      process.stdout.write(`${verb} of pid ${pid} → ${r.dir}: ${r.path} path${r.safeReason ? ` (${r.safeReason})` : ''}, ${r.chunks} chunks ` +
        `(${r.chunksWritten} written, ${r.chunksFromParent} from parent, ${formatBytes(r.bytesWritten)}), stall ${r.stallMs.toFixed(0)} ms, total ${r.totalMs.toFixed(0)} ms\n`);
    }
    return 0;
  } finally { view.done(); }
}
