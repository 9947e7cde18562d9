// Entry point of the `phos` command: picks the subcommand, runs it, turns its outcome into an exit status.
import { PhosError } from '../../proto/src/index.ts';
import { printError } from './output.ts';

// Each command's module loads only when that command runs: `phos restore` (inside a restore-to-running
// time) or `phos ps` never load the NATS client. Measured on the 2-core VM, `phos restore --help`: 0.64 ->
// 0.54 s through bin/phos (tsx), 0.18 -> 0.16 s bundled (bench/gpu/pack.sh).
interface Command {
  summary: string;
  load(): Promise<{ help: string; run(argv: string[]): Promise<number> }>;
}

const COMMANDS: Record<string, Command> = {
  demo: { summary: 'run phos end to end on this machine (one node; cudasim when there is no GPU)', load: async () => { const m = await import('./commands/demo.ts'); return { help: m.DEMO_HELP, run: m.demo }; } },
  up: { summary: 'bring up the embedded mesh here: nats-server, coordinator, node agent (until Ctrl-C)', load: async () => { const m = await import('./commands/up.ts'); return { help: m.UP_HELP, run: m.up }; } },
  doctor: { summary: 'check this machine: CRIU, kernel, NATS, CUDA driver, GPUs', load: async () => { const m = await import('./commands/doctor.ts'); return { help: m.DOCTOR_HELP, run: m.doctor }; } },
  agent: { summary: 'run the node agent in the foreground', load: async () => { const m = await import('./commands/agent.ts'); return { help: m.AGENT_HELP, run: m.agent }; } },
  run: { summary: 'start a command under phos (libphos, reserved pid, captured output)', load: async () => { const m = await import('./commands/run.ts'); return { help: m.RUN_HELP, run: m.run }; } },
  ps: { summary: 'list the processes the local agent manages', load: async () => { const m = await import('./commands/ps.ts'); return { help: m.PS_HELP, run: m.ps }; } },
  logs: { summary: "print a managed process's output (-f to follow)", load: async () => { const m = await import('./commands/logs.ts'); return { help: m.LOGS_HELP, run: m.logs }; } },
  'pre-dump': { summary: 'snapshot a running managed process into an image; it keeps running', load: async () => { const m = await import('./commands/pre-dump.ts'); return { help: m.PRE_DUMP_HELP, run: m.preDump }; } },
  dump: { summary: 'dump a managed process into an image; it ends once the image is sealed', load: async () => { const m = await import('./commands/dump.ts'); return { help: m.DUMP_HELP, run: m.dump }; } },
  restore: { summary: 'restore an image on this node (--gpu-map: onto other GPUs)', load: async () => { const m = await import('./commands/restore.ts'); return { help: m.RESTORE_HELP, run: m.restore }; } },
  nodes: { summary: 'list the nodes of the mesh, alive or down, with their GPUs', load: async () => { const m = await import('./commands/nodes.ts'); return { help: m.NODES_HELP, run: m.nodes }; } },
  migrate: { summary: 'live-migrate a managed process to another node, or move it to another GPU of this one (--to-gpu); cancel a migration', load: async () => { const m = await import('./commands/migrate.ts'); return { help: m.MIGRATE_HELP, run: m.migrate }; } },
  migrations: { summary: 'list migrations; --watch follows them', load: async () => { const m = await import('./commands/migrations.ts'); return { help: m.MIGRATIONS_HELP, run: m.migrations }; } },
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
  const loaded = await cmd.load();
  if (own.includes('--help') || own.includes('-h')) {
    process.stdout.write(loaded.help);
    return 0;
  }
  return loaded.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => { process.exitCode = printError(err, process.argv.includes('--json')); },
);
