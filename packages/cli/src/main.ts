import type { Client } from '@berth/client';
import { type CommandSpec, type FlagSpec, helpText, parseArgs, UsageError } from './args';
import { containersCommand } from './commands/containers';
import { contentCommand } from './commands/content';
import { eventsCommand } from './commands/events';
import { gcCommand } from './commands/gc';
import { imagesCommand } from './commands/images';
import { leasesCommand } from './commands/leases';
import { namespacesCommand } from './commands/namespaces';
import { pluginsCommand } from './commands/plugins';
import { runCommand } from './commands/run';
import { snapshotsCommand } from './commands/snapshots';
import { tasksCommand } from './commands/tasks';
import { cliVersion, versionCommand } from './commands/version';
import { type Globals, type Io, type OutputFormat, ReportedError, type Session } from './runtime';

export const DEFAULT_ADDRESS = '/run/berth/berth.sock';

export const GLOBAL_FLAGS: readonly FlagSpec[] = [
  {
    name: 'address',
    short: 'a',
    type: 'string',
    value: 'PATH',
    default: DEFAULT_ADDRESS,
    env: ['BERTH_ADDRESS', 'CONTAINERD_ADDRESS'],
    description: 'address of the daemon socket',
  },
  {
    name: 'namespace',
    short: 'n',
    type: 'string',
    value: 'NAME',
    default: 'default',
    env: ['CONTAINERD_NAMESPACE'],
    description: 'namespace to use',
  },
  {
    name: 'format',
    type: 'string',
    value: 'FORMAT',
    default: 'table',
    choices: ['table', 'json'],
    description: 'output format: table or json',
  },
  {
    name: 'timeout',
    type: 'duration',
    value: 'DURATION',
    default: 0,
    description: 'total timeout for the command, e.g. 10s (0: none)',
  },
];

export const ROOT: CommandSpec<Globals> = {
  name: 'berth',
  summary: 'berth CLI',
  description:
    'berth: a client for berthd and containerd, shaped like ctr.\n' +
    "Works against any daemon speaking containerd's gRPC API (--address).",
  subcommands: [
    versionCommand,
    pluginsCommand,
    namespacesCommand,
    contentCommand,
    leasesCommand,
    imagesCommand,
    containersCommand,
    eventsCommand,
    gcCommand,
    snapshotsCommand,
    runCommand,
    tasksCommand,
  ],
};

const processIo = (): Io => ({
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
});

/** The message for an error a command failed with (typed errors carry their own context). */
function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * Runs the CLI. Resolves with the exit code (0 ok, 1 failure, 2 usage) and also sets
 * process.exitCode, never calling process.exit: pending output still drains.
 */
export async function main(argv: readonly string[], io: Io = processIo()): Promise<number> {
  let client: Client | undefined;
  let code = 0;
  // A closed stdout (`berth content ls | head`) is not an error worth a stack trace.
  const onStdoutError = (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') io.stderr.write(`berth: ${err.message}\n`);
  };
  io.stdout.on('error', onStdoutError);
  let usagePath: readonly string[] = [];
  try {
    const parsed = parseArgs(ROOT, GLOBAL_FLAGS, argv, io.env);
    if (parsed.kind === 'version') {
      io.stdout.write(`berth version ${cliVersion()}\n`);
      return 0;
    }
    if (parsed.kind === 'help') {
      io.stdout.write(helpText(ROOT, GLOBAL_FLAGS, parsed.path));
      return 0;
    }
    usagePath = parsed.path;
    const opts = parsed.globals;
    const timeoutMs = opts.timeout as number;
    if (timeoutMs < 0) throw new UsageError('--timeout must not be negative', parsed.path);
    let session: Session | undefined;
    const globals: Globals = {
      address: opts.address as string,
      namespace: opts.namespace as string,
      format: opts.format as OutputFormat,
      timeoutMs,
      io,
      session() {
        if (!session) {
          // Loaded here so help and usage errors never pay for gRPC and the protos.
          const { connect } = require('@berth/client') as typeof import('@berth/client');
          client = connect(globals.address);
          session = {
            client,
            ctx: {
              namespace: globals.namespace,
              ...(timeoutMs > 0 ? { signal: AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs))) } : {}),
            },
          };
        }
        return session;
      },
    };
    await parsed.command.run!({ path: parsed.path, args: parsed.args, flags: parsed.flags, global: globals });
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`berth: ${err.message}\n\n${helpText(ROOT, GLOBAL_FLAGS, err.command ?? usagePath)}`);
      code = 2;
    } else {
      if (!(err instanceof ReportedError)) io.stderr.write(`berth: ${describe(err)}\n`);
      code = err instanceof ReportedError ? err.exitCode : 1;
    }
  } finally {
    client?.close();
    io.stdout.off('error', onStdoutError);
    if (io.stdout === process.stdout) process.exitCode = code;
  }
  return code;
}
