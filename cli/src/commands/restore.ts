// `phos restore --dir D`: restores an image on this node; the process continues where it was dumped.
import { callAgent, controlSocketPath } from '../agent-client.ts';
import { EXIT_HELP, SOCKET_HELP, parse, requireArg } from '../args.ts';
import { progressView } from '../progress.ts';
import { PhosError, type GpuMapEntry, type ProcessInfo } from '../../../proto/src/index.ts';

export const RESTORE_HELP = `usage: phos restore --dir D [--verify] [--gpu-map OLD=NEW[,OLD=NEW...]] [--json] [--socket PATH]

Restores the image in D on this node under its original pid. Before any process is made, the manifest and
the size of every CRIU file and gpu/ chunk file are checked; a mismatch is IMAGE_CORRUPT naming the file,
and a pid already in use is ILLEGAL_STATE. An image of the keeper path returns as soon as the app runs
again: its device memory is filled from the gpu/ chunks in the background (the app waits only for chunks
it touches before they arrive), each chunk's hash checked as it is read. A chunk that fails the check stays
unfilled (the app waits if it needs it); phos ps shows failed-fill and the agent log names the file.
--verify reads and hash-checks every gpu/ chunk first: a bad one is IMAGE_CORRUPT naming it, and no
process is made (costs a full read of the image before the app runs).
--gpu-map restores onto other GPUs of this node: OLD is a device ordinal as the process saw it, NEW an
ordinal of this node (phos doctor lists them); GPUs the map does not name go to the GPUs left over, their
own first (0=1 on a two-GPU node swaps them). Its device memory is placed on the new GPUs and the driver
restore moves the rest. A map naming a GPU that does not exist is BAD_ARGS before anything is touched.
Progress: a bar on a TTY (stderr); with --json one line per event, then the result.
${SOCKET_HELP}
${EXIT_HELP}
`;

/** "0=1,1=0" -> [{from: 0, to: 1}, {from: 1, to: 0}]; BAD_ARGS names a malformed entry. */
export function parseGpuMap(cmd: string, text: string): GpuMapEntry[] {
  return text.split(',').map((item) => {
    const m = /^\s*(\d+)\s*=\s*(\d+)\s*$/.exec(item);
    if (!m) throw new PhosError('BAD_ARGS', `phos ${cmd}: --gpu-map expects OLD=NEW device ordinals separated by commas, got '${item}'`, { remedy: `phos ${cmd} --help` });
    return { from: Number(m[1]), to: Number(m[2]) };
  });
}

export async function restore(argv: string[]): Promise<number> {
  const { values } = parse('restore', argv, { dir: { type: 'string' }, 'gpu-map': { type: 'string' }, verify: { type: 'boolean' } });
  const dir = requireArg('restore', 'dir', values.dir);
  const gpuMap = values['gpu-map'] !== undefined ? parseGpuMap('restore', values['gpu-map']) : undefined;
  const view = progressView({ json: values.json ?? false, tty: process.stderr.isTTY === true });
  try {
    const r = await callAgent(controlSocketPath(values.socket), 'restore', { dir, ...(gpuMap ? { gpuMap } : {}), ...(values.verify ? { verify: true } : {}) }, (e) => view.onEvent(e)) as ProcessInfo & { ms: number };
    view.done();
    const lazy = r.fill && r.fill.state === 'filling' ? `; ${r.fill.chunksTotal - r.fill.chunksDone} of ${r.fill.chunksTotal} chunks fill in the background (phos ps)` : '';
    process.stdout.write(values.json ? JSON.stringify({ ok: true, result: r }) + '\n' : `restored pid ${r.pid} (${r.job}) in ${r.ms.toFixed(0)} ms${lazy}\n`);
    return 0;
  } finally { view.done(); }
}
