// Entry point of the `phos` command: picks the subcommand, runs it, turns its outcome into an exit status.
import { PhosError } from '../../proto/src/index.ts';
import { printError } from './output.ts';
import { doctor, DOCTOR_HELP } from './commands/doctor.ts';
import { demo, DEMO_HELP } from './commands/demo.ts';
import { up, UP_HELP } from './commands/up.ts';
import { agent, AGENT_HELP } from './commands/agent.ts';
import { run, RUN_HELP } from './commands/run.ts';
import { ps, PS_HELP } from './commands/ps.ts';
import { logs, LOGS_HELP } from './commands/logs.ts';
import { preDump, PRE_DUMP_HELP } from './commands/pre-dump.ts';
import { dump, DUMP_HELP } from './commands/dump.ts';
import { restore, RESTORE_HELP } from './commands/restore.ts';
import { nodes, NODES_HELP } from './commands/nodes.ts';
import { migrations, MIGRATIONS_HELP } from './commands/migrations.ts';
import { migrate, MIGRATE_HELP } from './commands/migrate.ts';

interface Command {
  summary: string;
  help: string;
  run(argv: string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  demo: { summary: 'run phos end to end on this machine (one node; cudasim when there is no GPU)', help: DEMO_HELP, run: demo },
  up: { summary: 'bring up the embedded mesh here: nats-server, coordinator, node agent (until Ctrl-C)', help: UP_HELP, run: up },
  doctor: { summary: 'check this machine: CRIU, kernel, NATS, CUDA driver, GPUs', help: DOCTOR_HELP, run: doctor },
  agent: { summary: 'run the node agent in the foreground', help: AGENT_HELP, run: agent },
  run: { summary: 'start a command under phos (libphos, reserved pid, captured output)', help: RUN_HELP, run },
  ps: { summary: 'list the processes the local agent manages', help: PS_HELP, run: ps },
  logs: { summary: "print a managed process's output (-f to follow)", help: LOGS_HELP, run: logs },
  'pre-dump': { summary: 'snapshot a running managed process into an image; it keeps running', help: PRE_DUMP_HELP, run: preDump },
  dump: { summary: 'dump a managed process into an image; it ends once the image is sealed', help: DUMP_HELP, run: dump },
  restore: { summary: 'restore an image on this node (--gpu-map: onto other GPUs)', help: RESTORE_HELP, run: restore },
  nodes: { summary: 'list the nodes of the mesh, alive or down, with their GPUs', help: NODES_HELP, run: nodes },
  migrate: { summary: 'live-migrate a managed process to another node, or move it to another GPU of this one (--to-gpu); cancel a migration', help: MIGRATE_HELP, run: migrate },
  migrations: { summary: 'list migrations; --watch follows them', help: MIGRATIONS_HELP, run: migrations },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'phos — checkpoint, restore and live-migrate running CUDA processes',
    '',
    'usage: phos <command> [options]',
    '',
    'commands:',
    ...lines,
    '',
    "Run 'phos <command> --help' for a command's options. Every command takes --json.",
    '',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const cmd = COMMANDS[name];
  if (!cmd) throw new PhosError('BAD_ARGS', `unknown command '${name}'`, { remedy: `run 'phos --help' for the list: ${Object.keys(COMMANDS).join(', ')}` });
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (own.includes('--help') || own.includes('-h')) {
    process.stdout.write(cmd.help);
    return 0;
  }
  return cmd.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => { process.exitCode = printError(err, process.argv.includes('--json')); },
);
