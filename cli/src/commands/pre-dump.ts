// `phos pre-dump --pid N --dir D [--parent D0]`: a snapshot image of a running managed process; it keeps running.
import { checkpoint, CHECKPOINT_OPTIONS_HELP } from '../checkpoint-command.ts';

export const PRE_DUMP_HELP = `usage: phos pre-dump --pid N --dir D [--parent D0] [--json] [--socket PATH]

Writes an image of the running managed process N into D (new or empty); the process keeps running.
${CHECKPOINT_OPTIONS_HELP}
`;

export function preDump(argv: string[]): Promise<number> {
  return checkpoint('pre-dump', argv);
}
