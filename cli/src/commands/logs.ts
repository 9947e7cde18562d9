// `phos logs ID [-f]`: a managed process's output (stdout+stderr), before and after any restore.
import { callAgent, controlSocketPath } from '../agent-client.ts';
import { EXIT_HELP, SOCKET_HELP, parse } from '../args.ts';
import { PhosError } from '../../../proto/src/index.ts';

export const LOGS_HELP = `usage: phos logs ID [-f] [--socket PATH]

Prints the output of the managed process ID (a pid or a job name). -f/--follow keeps printing until it ends.
${SOCKET_HELP}
${EXIT_HELP}
`;

export async function logs(argv: string[]): Promise<number> {
  const { values, positionals } = parse('logs', argv, { follow: { type: 'boolean', short: 'f' } }, true);
  const ref = positionals[0];
  if (!ref || positionals.length > 1) throw new PhosError('BAD_ARGS', 'phos logs: give one process (pid or job name)', { remedy: 'phos logs --help' });
  await callAgent(controlSocketPath(values.socket), 'logs', { ref, follow: values.follow ?? false }, (e) => {
    if (e.t !== 'log') return;
    process.stdout.write(values.json ? JSON.stringify(e) + '\n' : e.data);
  });
  return 0;
}
