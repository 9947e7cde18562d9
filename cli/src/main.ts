// Entry point of the `phos` command: picks the subcommand, runs it, turns its outcome into an exit status.
import { PhosError } from '../../proto/src/index.ts';
import { printError } from './output.ts';
import { doctor, DOCTOR_HELP } from './commands/doctor.ts';

interface Command {
  summary: string;
  help: string;
  run(argv: string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  doctor: { summary: 'check this machine: CRIU, kernel, NATS, CUDA driver, GPUs', help: DOCTOR_HELP, run: doctor },
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
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(cmd.help);
    return 0;
  }
  return cmd.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => { process.exitCode = printError(err, process.argv.includes('--json')); },
);
