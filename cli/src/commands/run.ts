// `phos run [--job NAME] -- CMD…`: asks the agent to start CMD under phos and prints its pid.
import { callAgent, controlSocketPath } from '../agent-client.ts';
import { EXIT_HELP, SOCKET_HELP, parse } from '../args.ts';
import { PhosError, type ProcessInfo } from '../../../proto/src/index.ts';

export const RUN_HELP = `usage: phos run [--job NAME] [--no-preload] [--json] [--socket PATH] -- CMD [ARG…]

The node agent starts CMD: in its own session, stdin /dev/null, stdout+stderr appended to a log under the
agent's state dir (survives dump and restore; read it with phos logs), libphos preloaded
(PHOS_AGENT_SOCK, PHOS_VA_BASE set by the agent), with a pid from the node's reserved range so a restore
elsewhere finds it free. The environment and working directory are this shell's.
  --job NAME      job name (default: CMD's base name)
  --no-preload    start without libphos (images then always take the safe path)
${SOCKET_HELP}
Prints the pid (or, with --json, the process record).
${EXIT_HELP}
`;

export async function run(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const cmd = dash < 0 ? [] : argv.slice(dash + 1);
  const { values } = parse('run', own, { job: { type: 'string' }, 'no-preload': { type: 'boolean' } });
  if (cmd.length === 0) throw new PhosError('BAD_ARGS', 'phos run: give the command after --', { remedy: 'phos run -- ./train.py' });
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  const info = await callAgent(controlSocketPath(values.socket), 'run', {
    argv: cmd, job: values.job, cwd: process.cwd(), env, preload: !values['no-preload'],
  }) as ProcessInfo;
  process.stdout.write(values.json ? JSON.stringify({ ok: true, process: info }) + '\n' : `${info.pid}\n`);
  return 0;
}
