import { InvalidArgumentError } from '@berth/api';
import { builtins } from './builtins';
import { configToToml, type DaemonConfig, DEFAULT_CONFIG_PATH, defaultConfig, loadConfig } from './config';
import { type Daemon, startDaemon } from './daemon';
import { createLogger, type LogLevel, parseLogLevel, type RootLogger } from './log';
import { PACKAGE, REVISION, VERSION } from './version';

export interface Flags {
  config?: string;
  logLevel?: string;
  address?: string;
  root?: string;
  state?: string;
  version: boolean;
  help: boolean;
  /** What is left after the flags: a command (`config default`) or nothing (run the daemon). */
  args: string[];
}

const FLAGS: Record<string, keyof Flags> = {
  config: 'config',
  c: 'config',
  'log-level': 'logLevel',
  l: 'logLevel',
  address: 'address',
  a: 'address',
  root: 'root',
  state: 'state',
};
const BOOLEANS: Record<string, 'version' | 'help'> = {
  version: 'version',
  v: 'version',
  help: 'help',
  h: 'help',
};

/** Parses berthd's flags as containerd's (urfave/cli): `--flag value`, `--flag=value`, `-f value`. */
export function parseFlags(argv: readonly string[]): Flags {
  const flags: Flags = { version: false, help: false, args: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      flags.args.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      flags.args.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq === -1 ? body : body.slice(0, eq);
    const bool = BOOLEANS[name];
    if (bool) {
      if (eq !== -1) throw new InvalidArgumentError(`flag --${name} takes no value`);
      flags[bool] = true;
      continue;
    }
    const key = FLAGS[name];
    if (!key) throw new InvalidArgumentError(`flag provided but not defined: -${name}`);
    let value: string;
    if (eq !== -1) value = body.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined) throw new InvalidArgumentError(`flag needs an argument: -${name}`);
      value = next;
      i++;
    }
    (flags as unknown as Record<string, string>)[key] = value;
  }
  return flags;
}

export const USAGE = `NAME:
   berthd - a containerd-compatible container runtime daemon

USAGE:
   berthd [global options] [command [command options]]

   Without a command, berthd runs in the foreground and serves containerd's gRPC API
   on a unix socket (stock ctr works against it: ctr --address <socket> ...).

COMMANDS:
   config default   print the default configuration, every plugin's defaults included
   config dump      print the configuration berthd would run with (file and flags merged)
   help             show this help

GLOBAL OPTIONS:
   --config value, -c value      path to the configuration file (default: "${DEFAULT_CONFIG_PATH}")
   --log-level value, -l value   set the logging level [trace, debug, info, warn, error, fatal, panic]
   --address value, -a value     address for berthd's gRPC server (default: "${defaultConfig().grpc.address}")
   --root value                  berthd root directory (default: "${defaultConfig().root}")
   --state value                 berthd state directory (default: "${defaultConfig().state}")
   --help, -h                    show help
   --version, -v                 print the version
`;

/** The configuration from the file (when any) with the flags applied over it. */
export function resolveConfig(flags: Flags, warn: (msg: string) => void = () => {}): DaemonConfig {
  const explicit = flags.config !== undefined;
  const { config, warnings } = loadConfig(flags.config ?? DEFAULT_CONFIG_PATH, explicit);
  for (const w of warnings) warn(w);
  if (flags.root) config.root = flags.root;
  if (flags.state) config.state = flags.state;
  if (flags.address) config.grpc.address = flags.address;
  if (flags.logLevel !== undefined) config.debug.level = flags.logLevel;
  if (config.debug.level !== '') parseLogLevel(config.debug.level);
  if (config.grpc.address === '') throw new InvalidArgumentError('grpc address cannot be empty');
  return config;
}

/**
 * What stopped a start, in words an operator can act on: a module that cannot be loaded
 * means the installation is broken, not the configuration (the require stack is noise).
 */
export function startFailure(err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined;
  const message = e?.message ?? String(err);
  if (e?.code === 'MODULE_NOT_FOUND') {
    return `${message.split('\n')[0]}: berthd's installation is incomplete; reinstall its dependencies (pnpm install in the repository, or npm install of @berth/daemon)`;
  }
  return message;
}

function fail(err: unknown): void {
  process.stderr.write(`berthd: ${(err as Error)?.message ?? String(err)}\n`);
  process.exitCode = 1;
}

/** Runs the daemon until SIGTERM or SIGINT, then shuts it down cleanly and exits 0. */
async function serve(flags: Flags): Promise<void> {
  const log: RootLogger = createLogger('info');
  const pending: string[] = [];
  const config = resolveConfig(flags, (msg) => pending.push(msg));
  const level: LogLevel = config.debug.level ? parseLogLevel(config.debug.level) : 'info';
  log.setLevel(level);
  for (const msg of pending) log.warn(msg);

  let daemon: Daemon | undefined;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.with({ signal }).info('received signal');
    const done = daemon ? daemon.stop() : Promise.resolve();
    done.then(
      () => process.exit(0),
      (err) => {
        log.with({ error: (err as Error).message }).error('shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    daemon = await startDaemon(config, { log });
  } catch (err) {
    throw new Error(`failed to start: ${startFailure(err)}`, { cause: err });
  }
  process.stderr.write(`berthd ready address=${daemon.address}\n`);
  if (stopping) await daemon.stop();
}

/** berthd's entry point (bin/berthd calls it with process.argv.slice(2)). */
export async function main(argv: readonly string[]): Promise<void> {
  let flags: Flags;
  try {
    flags = parseFlags(argv);
  } catch (err) {
    fail(err);
    return;
  }
  if (flags.help || flags.args[0] === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  if (flags.version) {
    process.stdout.write(`${`berthd ${PACKAGE} ${VERSION} ${REVISION}`.trimEnd()}\n`);
    return;
  }
  try {
    const [command, sub, ...rest] = flags.args;
    if (command === undefined) return await serve(flags);
    if (command === 'config' && rest.length === 0) {
      if (sub === 'default') {
        process.stdout.write(configToToml(defaultConfig(), builtins()));
        return;
      }
      if (sub === 'dump') {
        process.stdout.write(
          configToToml(
            resolveConfig(flags, (m) => process.stderr.write(`berthd: warning: ${m}\n`)),
            builtins(),
          ),
        );
        return;
      }
    }
    throw new InvalidArgumentError(`unknown command "${flags.args.join(' ')}" (see berthd --help)`);
  } catch (err) {
    fail(err);
  }
}
