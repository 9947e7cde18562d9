// `phos restore --dir D`: restores an image on this node; the process continues where it was dumped.
import { callAgent, controlSocketPath } from '../agent-client.ts';
import { EXIT_HELP, SOCKET_HELP, parse, requireArg } from '../args.ts';
import { progressView } from '../progress.ts';
import type { ProcessInfo } from '../../../proto/src/index.ts';

export const RESTORE_HELP = `usage: phos restore --dir D [--json] [--socket PATH]

Restores the image in D on this node under its original pid. Before any process is made, the manifest and
the size of every CRIU file and gpu/ chunk file are checked; a mismatch is IMAGE_CORRUPT naming the file,
and a pid already in use is ILLEGAL_STATE. An image of the keeper path returns as soon as the app runs
again: its device memory is filled from the gpu/ chunks in the background (the app waits only for chunks
it touches before they arrive), each chunk's hash checked as it is read. A chunk that fails the check stays
unfilled (the app waits if it needs it); phos ps shows failed-fill and the agent log names the file.
Progress: a bar on a TTY (stderr); with --json one line per event, then the result.
${SOCKET_HELP}
${EXIT_HELP}
`;

export async function restore(argv: string[]): Promise<number> {
  const { values } = parse('restore', argv, { dir: { type: 'string' } });
  const dir = requireArg('restore', 'dir', values.dir);
  const view = progressView({ json: values.json ?? false, tty: process.stderr.isTTY === true });
  try {
    const r = await callAgent(controlSocketPath(values.socket), 'restore', { dir }, (e) => view.onEvent(e)) as ProcessInfo & { ms: number };
    view.done();
    const lazy = r.fill && r.fill.state === 'filling' ? `; ${r.fill.chunksTotal - r.fill.chunksDone} of ${r.fill.chunksTotal} chunks fill in the background (phos ps)` : '';
    process.stdout.write(values.json ? JSON.stringify({ ok: true, result: r }) + '\n' : `restored pid ${r.pid} (${r.job}) in ${r.ms.toFixed(0)} ms${lazy}\n`);
    return 0;
  } finally { view.done(); }
}
