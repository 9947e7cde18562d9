// `phos ps`: the processes the local agent manages.
import { callAgent, controlSocketPath } from '../agent-client.ts';
import { EXIT_HELP, SOCKET_HELP, parse } from '../args.ts';
import { formatBytes, renderTable } from '../output.ts';
import type { ProcessInfo } from '../../../proto/src/index.ts';

export const PS_HELP = `usage: phos ps [--all] [--json] [--socket PATH]

Lists the processes the node agent manages: pid, job, state (running, freezing, frozen, dumping, thawing,
restoring, dumped, exited, failed; a restored process whose device memory still fills from its image in the
background shows running(filling N%), and failed-fill when a chunk file failed verification during that fill —
the app runs but waits if it touches that chunk), whether libphos is linked, the device memory the keeper holds, the
command. --all includes failed records.
${SOCKET_HELP}
${EXIT_HELP}
`;

function stateText(p: ProcessInfo): string {
  if (p.exitCode !== null && p.state === 'exited') return `exited(${p.exitCode})`;
  if (p.state === 'running' && p.fill?.state === 'failed') return 'failed-fill';
  if (p.state === 'running' && p.fill?.state === 'filling') return `running(filling ${Math.floor((100 * p.fill.bytesDone) / Math.max(1, p.fill.bytesTotal))}%)`;
  return p.state;
}

export async function ps(argv: string[]): Promise<number> {
  const { values } = parse('ps', argv, { all: { type: 'boolean' } });
  const { processes } = await callAgent(controlSocketPath(values.socket), 'ps', { all: values.all ?? false }) as { processes: ProcessInfo[] };
  if (values.json) { process.stdout.write(JSON.stringify({ ok: true, processes }) + '\n'); return 0; }
  process.stdout.write(renderTable(['PID', 'JOB', 'STATE', 'LINKED', 'KEPT', 'COMMAND'], processes.map((p) => [
    String(p.pid), p.job, stateText(p),
    p.linked ? 'yes' : 'no', formatBytes(p.keptBytes), p.argv.join(' '),
  ])));
  return 0;
}
