import type { CommandSpec } from '../../args';
import type { Globals } from '../../runtime';
import { checkCommand } from './check';
import { exportCommand } from './export';
import { importCommand } from './import';
import { inspectCommand } from './inspect';
import { labelCommand } from './label';
import { listCommand } from './list';
import { pullCommand } from './pull';
import { pushCommand } from './push';
import { removeCommand } from './remove';
import { tagCommand } from './tag';
import { usageCommand } from './usage';

/**
 * `berth images`: one file per subcommand in this folder; pull, push, import, export and
 * friends join by adding their command to this list.
 */
export const imagesCommand: CommandSpec<Globals> = {
  name: 'images',
  aliases: ['image', 'i'],
  summary: 'manage images',
  subcommands: [
    listCommand,
    removeCommand,
    tagCommand,
    labelCommand,
    inspectCommand,
    pullCommand,
    pushCommand,
    checkCommand,
    importCommand,
    exportCommand,
    usageCommand,
  ],
};
