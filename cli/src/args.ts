// Argument parsing shared by the agent-facing subcommands: parseArgs with BAD_ARGS naming the command's
// --help, and the options every one of them takes (--json, --socket).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { PhosError } from '../../proto/src/index.ts';

export const SOCKET_HELP = `  --socket PATH   the agent's control socket (default $PHOS_CONTROL_SOCK, else /run/phos/control.sock)
  --json          machine-readable output: one JSON line per event, then the result`;

export const EXIT_HELP = `Exit status: 0 ok; 2 bad arguments; 3 NOT_FOUND / NOT_MANAGED; 4 CRIU_MISSING / CRIU_FAILED / DRIVER_FAILED;
5 AGENT_UNAVAILABLE; 6 TIMEOUT; 7 IMAGE_CORRUPT / DISK_FULL; 8 ILLEGAL_STATE; 70 INTERNAL.`;

export function parse<O extends NonNullable<ParseArgsConfig['options']>>(cmd: string, argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { json: { type: 'boolean' }, socket: { type: 'string' }, ...options }, strict: true, allowPositionals });
  } catch (err) {
    throw new PhosError('BAD_ARGS', (err as Error).message, { remedy: `phos ${cmd} --help` });
  }
}

export function uintArg(cmd: string, name: string, v: string | undefined): number {
  if (v === undefined) throw new PhosError('BAD_ARGS', `phos ${cmd}: --${name} is required`, { remedy: `phos ${cmd} --help` });
  if (!/^\d+$/.test(v) || Number(v) <= 0) throw new PhosError('BAD_ARGS', `phos ${cmd}: --${name} must be a positive integer, got '${v}'`, { remedy: `phos ${cmd} --help` });
  return Number(v);
}

export function requireArg(cmd: string, name: string, v: string | undefined): string {
  if (!v) throw new PhosError('BAD_ARGS', `phos ${cmd}: --${name} is required`, { remedy: `phos ${cmd} --help` });
  return v;
}
