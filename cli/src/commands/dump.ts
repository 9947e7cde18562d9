// `phos dump --pid N --dir D`: an image of a managed process; the process ends once the image is sealed.
import { checkpoint, CHECKPOINT_OPTIONS_HELP } from '../checkpoint-command.ts';

export const DUMP_HELP = `usage: phos dump --pid N --dir D [--parent D0] [--json] [--socket PATH]

Writes an image of the managed process N into D (new or empty) and ends the process once the image is
sealed. If anything fails first, the process continues and no image is left behind.
${CHECKPOINT_OPTIONS_HELP}
`;

export function dump(argv: string[]): Promise<number> {
  return checkpoint('dump', argv);
}
