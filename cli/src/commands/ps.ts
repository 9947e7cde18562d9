// `phos ps`: the processes the local agent manages.
import { callAgent, controlSocketPath } from '../agent-client.ts';
import { EXIT_HELP, SOCKET_HELP, parse } from '../args.ts';
import { formatBytes, renderTable } from '../output.ts';
import type { ProcessInfo } from '../../../proto/src/index.ts';

export const PS_HELP = `usage: phos ps [--all] [--json] [--socket PATH]

Lists the processes the node agent manages: pid, job, state (running, freezing, frozen, dumping, thawing,
restoring, dumped, exited, failed), whether libphos is linked, the device memory the keeper holds, the
command. --all includes failed records.
${SOCKET_HELP}
${EXIT_HELP}
`;

export async function ps(argv: string[]): Promise<number> {
  const { values } = parse('ps', argv, { all: { type: 'boolean' } });
  const { processes } = await callAgent(controlSocketPath(values.socket), 'ps', { all: values.all ?? false }) as { processes: ProcessInfo[] };
  if (values.json) { process.stdout.write(JSON.stringify({ ok: true, processes }) + '\n'); return 0; }
  process.stdout.write(renderTable(['PID', 'JOB', 'STATE', 'LINKED', 'KEPT', 'COMMAND'], processes.map((p) => [
    String(p.pid), p.job, p.exitCode !== null && p.state === 'exited' ? `exited(${p.exitCode})` : p.state,
    p.linked ? 'yes' : 'no', formatBytes(p.keptBytes), p.argv.join(' '),
  ])));
  return 0;
}
