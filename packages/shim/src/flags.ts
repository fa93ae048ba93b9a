/**
 * The shim command line as containerd writes it (Go's flag package: `-name value`,
 * `-name=value`, `--name`, booleans without a value), then an optional action.
 */

export interface ShimFlags {
  namespace: string;
  id: string;
  /** The daemon's gRPC address; events go to its ttrpc sibling (TTRPC_ADDRESS). */
  address: string;
  publishBinary: string;
  /** Bundle directory when it is not the working directory (`delete`). */
  bundle: string;
  /** Serve on this socket path instead of the inherited fd 3. */
  socket: string;
  debug: boolean;
  version: boolean;
  /** `start`, `delete`, or '' to serve. */
  action: string;
}

export class UsageError extends Error {}

const STRING_FLAGS: Record<string, keyof ShimFlags> = {
  namespace: 'namespace',
  id: 'id',
  address: 'address',
  'publish-binary': 'publishBinary',
  bundle: 'bundle',
  socket: 'socket',
};
const BOOL_FLAGS: Record<string, 'debug' | 'version'> = { debug: 'debug', v: 'version' };

export function parseFlags(argv: readonly string[]): ShimFlags {
  const flags: ShimFlags = {
    namespace: '',
    id: '',
    address: '',
    publishBinary: 'containerd',
    bundle: '',
    socket: '',
    debug: false,
    version: false,
    action: '',
  };
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      i++;
      break;
    }
    if (arg.length < 2 || arg[0] !== '-') break;
    const body = arg.startsWith('--') ? arg.slice(2) : arg.slice(1);
    const eq = body.indexOf('=');
    const name = eq === -1 ? body : body.slice(0, eq);
    const inline = eq === -1 ? undefined : body.slice(eq + 1);
    const bool = BOOL_FLAGS[name];
    if (bool !== undefined) {
      if (inline === undefined) flags[bool] = true;
      else if (/^(1|t|true|T|TRUE|True)$/.test(inline)) flags[bool] = true;
      else if (/^(0|f|false|F|FALSE|False)$/.test(inline)) flags[bool] = false;
      else throw new UsageError(`invalid boolean value ${JSON.stringify(inline)} for -${name}`);
      continue;
    }
    const key = STRING_FLAGS[name];
    if (key === undefined) throw new UsageError(`flag provided but not defined: -${name}`);
    let value = inline;
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: -${name}`);
      value = argv[++i];
    }
    (flags as unknown as Record<string, string>)[key] = value;
  }
  flags.action = argv[i] ?? '';
  return flags;
}

/** The argument list that makes a child process serve with the same identity. */
export function serveArgs(flags: ShimFlags): string[] {
  const args = ['-namespace', flags.namespace, '-id', flags.id, '-address', flags.address];
  if (flags.publishBinary !== '') args.push('-publish-binary', flags.publishBinary);
  if (flags.debug) args.push('-debug');
  return args;
}
