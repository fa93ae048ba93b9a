/**
 * The command line of containerd-shim-berth-v1. The serving path and the cleanup path are
 * required only when used: `start` runs per container and must stay light.
 */
import { parseFlags, type ShimFlags, UsageError } from './flags';
import { createLogger } from './log';
import { SHIM_VERSION } from './version';

const NAME = 'containerd-shim-berth-v1';

function printVersion(): void {
  process.stdout.write(
    `${NAME}:\n  Version:  ${SHIM_VERSION}\n  Revision: berth\n  Node version: ${process.version}\n\n`,
  );
}

function write(stream: NodeJS.WriteStream, data: string | Buffer): Promise<void> {
  return new Promise((resolve) => stream.write(data, () => resolve()));
}

function readStdin(): Buffer {
  // containerd writes the runtime options Any on stdin (or gives /dev/null); a terminal means a human.
  if (process.stdin.isTTY) return Buffer.alloc(0);
  try {
    return require('node:fs').readFileSync(0) as Buffer;
  } catch {
    return Buffer.alloc(0);
  }
}

/** Runs the shim with argv (without node and the script); resolves with the exit code. */
export async function main(argv: readonly string[], entry: string = process.argv[1]): Promise<number> {
  let flags: ShimFlags;
  try {
    flags = parseFlags(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(
      `${err.message}\nUsage of ${NAME}: [-namespace ns] [-id id] [-address addr] [-publish-binary bin] [-bundle dir] [-debug] [-v] [start|delete]\n`,
    );
    return 2;
  }
  if (flags.version) {
    printVersion();
    return 0;
  }
  try {
    switch (flags.action) {
      case 'start': {
        const { start } = require('./start') as typeof import('./start');
        const address = await start(flags, { entry, options: readStdin() });
        await write(process.stdout, address);
        return 0;
      }
      case 'delete': {
        const { cleanup, encodeDeleteResponse } = require('./cleanup') as typeof import('./cleanup');
        const log = createLogger((line) => process.stderr.write(line), flags.debug);
        const result = await cleanup(flags, log);
        await write(process.stdout, encodeDeleteResponse(result));
        return 0;
      }
      case '': {
        if (flags.namespace === '') throw new Error('shim namespace cannot be empty');
        const { runServe } = require('./serve') as typeof import('./serve');
        await runServe(flags);
        return 0;
      }
      default:
        process.stderr.write(`${NAME}: unknown action ${JSON.stringify(flags.action)}\n`);
        return 2;
    }
  } catch (err) {
    process.stderr.write(`${NAME}: ${(err as Error).message}\n`);
    return 1;
  }
}
