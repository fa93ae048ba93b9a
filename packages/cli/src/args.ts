/**
 * berth's argument parser: a command tree (ctr's shape), flags after any command word,
 * global flags anywhere, `--` ending flags. Kept dependency-free so `berth --help` and
 * usage errors start without loading gRPC.
 */
import { parseDuration } from './units';

export type FlagType = 'bool' | 'string' | 'int' | 'duration';

export interface FlagSpec {
  name: string;
  short?: string;
  type: FlagType;
  /** Placeholder shown in help for a flag with a value. */
  value?: string;
  description: string;
  default?: boolean | string | number;
  /** Environment variables consulted, first set wins, before the default. */
  env?: readonly string[];
  /** Values accepted for a string flag. */
  choices?: readonly string[];
  /** How help shows the default (when the raw value reads badly, e.g. a duration in ms). */
  defaultText?: string;
  /** A string flag that may be given several times (collected into an array). */
  repeatable?: boolean;
}

export type FlagValue = boolean | string | number | string[];
export type FlagValues = Record<string, FlagValue | undefined>;

export interface Invocation<G = unknown> {
  /** The command path, e.g. ['content', 'ls']. */
  path: string[];
  args: string[];
  flags: FlagValues;
  global: G;
}

export interface CommandSpec<G = unknown> {
  name: string;
  aliases?: readonly string[];
  summary: string;
  /** Arguments shown after the flags in the usage line, e.g. '<name> [<key>=<value>...]'. */
  argsUsage?: string;
  description?: string;
  flags?: readonly FlagSpec[];
  subcommands?: readonly CommandSpec<G>[];
  minArgs?: number;
  maxArgs?: number;
  /**
   * After this many positional arguments every further word is an argument, flags included
   * (`berth run IMAGE ID sh -c ...`: ctr's SkipArgReorder, for commands that take a command line).
   */
  flagsEndAfter?: number;
  run?: (inv: Invocation<G>) => Promise<void>;
}

/** A mistake in how the command was called: exit 2 with the usage of `command`. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command: readonly string[],
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export type ParseResult<G> =
  | {
      kind: 'run';
      command: CommandSpec<G>;
      path: string[];
      args: string[];
      flags: FlagValues;
      globals: FlagValues;
    }
  | { kind: 'help'; command: CommandSpec<G>; path: string[] }
  | { kind: 'version' };

export function findSubcommand<G>(cmd: CommandSpec<G>, word: string): CommandSpec<G> | undefined {
  return cmd.subcommands?.find((c) => c.name === word || c.aliases?.includes(word));
}

function convert(flag: FlagSpec, raw: string, where: readonly string[]): FlagValue {
  const shown = `--${flag.name}`;
  switch (flag.type) {
    case 'int': {
      if (!/^-?\d+$/.test(raw.trim()))
        throw new UsageError(`invalid value "${raw}" for ${shown}: not an integer`, where);
      return Number(raw);
    }
    case 'duration': {
      const ms = parseDuration(raw);
      if (ms === undefined)
        throw new UsageError(`invalid value "${raw}" for ${shown}: not a duration`, where);
      return ms;
    }
    case 'bool': {
      if (/^(true|1)$/i.test(raw)) return true;
      if (/^(false|0)$/i.test(raw)) return false;
      throw new UsageError(`invalid value "${raw}" for ${shown}: not a boolean`, where);
    }
    default:
      if (flag.choices && !flag.choices.includes(raw)) {
        throw new UsageError(
          `invalid value "${raw}" for ${shown}: must be one of ${flag.choices.join(', ')}`,
          where,
        );
      }
      return raw;
  }
}

/** Defaults and environment for flags not given on the command line. */
function fillDefaults(
  specs: readonly FlagSpec[],
  values: FlagValues,
  env: NodeJS.ProcessEnv,
  where: readonly string[],
): void {
  for (const f of specs) {
    if (values[f.name] !== undefined) continue;
    const fromEnv = f.env?.map((k) => env[k]).find((v) => v !== undefined && v !== '');
    if (fromEnv !== undefined) values[f.name] = convert(f, fromEnv, where);
    else if (f.default !== undefined) values[f.name] = f.default;
    else if (f.type === 'bool') values[f.name] = false;
    else if (f.repeatable) values[f.name] = [];
  }
}

/**
 * Parses argv against the tree rooted at `root`. Command words come first (flags may be
 * interleaved); once a command without subcommands is reached, the rest are its flags
 * and positional arguments. `--help`/`-h` anywhere asks for help on the command reached.
 */
export function parseArgs<G>(
  root: CommandSpec<G>,
  globalFlags: readonly FlagSpec[],
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): ParseResult<G> {
  let cmd = root;
  const path: string[] = [];
  const args: string[] = [];
  const flags: FlagValues = {};
  const globals: FlagValues = {};
  let help = false;
  let version = false;
  let flagsDone = false;

  const lookup = (name: string, short: boolean): { spec: FlagSpec; global: boolean } | undefined => {
    const match = (f: FlagSpec) => (short ? f.short === name : f.name === name);
    const local = cmd.flags?.find(match);
    if (local) return { spec: local, global: false };
    const g = globalFlags.find(match);
    return g ? { spec: g, global: true } : undefined;
  };

  const set = (found: { spec: FlagSpec; global: boolean }, value: FlagValue): void => {
    const target = found.global ? globals : flags;
    if (found.spec.repeatable) {
      const list = (target[found.spec.name] as string[] | undefined) ?? [];
      list.push(String(value));
      target[found.spec.name] = list;
    } else {
      target[found.spec.name] = value;
    }
  };

  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!;
    if (!flagsDone && tok === '--') {
      flagsDone = true;
      continue;
    }
    if (!flagsDone && tok.startsWith('-') && tok !== '-') {
      const long = tok.startsWith('--');
      const body = tok.slice(long ? 2 : 1);
      const eq = body.indexOf('=');
      const name = eq === -1 ? body : body.slice(0, eq);
      const inline = eq === -1 ? undefined : body.slice(eq + 1);
      if ((long && name === 'help') || (!long && name === 'h')) {
        help = true;
        continue;
      }
      if (cmd === root && long && name === 'version' && !root.flags?.some((f) => f.name === 'version')) {
        version = true;
        continue;
      }
      // Several short booleans together: -qd.
      if (!long && inline === undefined && name.length > 1) {
        const all = [...name].map((c) => lookup(c, true));
        if (all.every((f) => f?.spec.type === 'bool')) {
          for (const f of all) set(f!, true);
          continue;
        }
      }
      const found = lookup(name, !long);
      if (!found) throw new UsageError(`unknown flag ${long ? '--' : '-'}${name}`, path);
      if (found.spec.type === 'bool') {
        set(found, inline === undefined ? true : convert(found.spec, inline, path));
        continue;
      }
      let raw = inline;
      if (raw === undefined) {
        if (i + 1 >= argv.length) throw new UsageError(`flag ${tok} needs a value`, path);
        raw = argv[++i]!;
      }
      set(found, convert(found.spec, raw, path));
      continue;
    }
    if (cmd.subcommands && cmd.subcommands.length > 0 && args.length === 0) {
      const sub = findSubcommand(cmd, tok);
      if (!sub) {
        if (help) break;
        const where = path.length ? `berth ${path.join(' ')}` : 'berth';
        throw new UsageError(`unknown command "${tok}" for "${where}"`, path);
      }
      cmd = sub;
      path.push(sub.name);
      continue;
    }
    args.push(tok);
    if (cmd.flagsEndAfter !== undefined && args.length >= cmd.flagsEndAfter) flagsDone = true;
  }

  if (version) return { kind: 'version' };
  if (help) return { kind: 'help', command: cmd, path };
  if (!cmd.run) {
    const where = path.length ? `berth ${path.join(' ')}` : 'berth';
    throw new UsageError(`"${where}" needs a command`, path);
  }
  if (cmd.minArgs !== undefined && args.length < cmd.minArgs) {
    throw new UsageError(`"berth ${path.join(' ')}" expects ${describeCount(cmd)}, got ${args.length}`, path);
  }
  if (cmd.maxArgs !== undefined && args.length > cmd.maxArgs) {
    throw new UsageError(`"berth ${path.join(' ')}" expects ${describeCount(cmd)}, got ${args.length}`, path);
  }
  fillDefaults(cmd.flags ?? [], flags, env, path);
  fillDefaults(globalFlags, globals, env, path);
  return { kind: 'run', command: cmd, path, args, flags, globals };
}

function describeCount(cmd: { minArgs?: number; maxArgs?: number }): string {
  const { minArgs = 0, maxArgs } = cmd;
  const n = (k: number) => `${k} argument${k === 1 ? '' : 's'}`;
  if (maxArgs === undefined) return `at least ${n(minArgs)}`;
  if (minArgs === maxArgs) return n(minArgs);
  if (minArgs === 0) return `at most ${n(maxArgs)}`;
  return `${minArgs} to ${n(maxArgs)}`;
}

/** Walks the tree along path (names as parsed). */
export function resolvePath<G>(root: CommandSpec<G>, path: readonly string[]): CommandSpec<G> {
  let cmd = root;
  for (const word of path) cmd = findSubcommand(cmd, word) ?? cmd;
  return cmd;
}

function flagLines(flags: readonly FlagSpec[]): string[] {
  const left = flags.map((f) => {
    const names = f.short ? `-${f.short}, --${f.name}` : `    --${f.name}`;
    return f.type === 'bool' ? names : `${names} ${f.value ?? f.type.toUpperCase()}`;
  });
  const width = Math.max(...left.map((l) => l.length));
  return flags.map((f, i) => {
    let text = f.description;
    const extras: string[] = [];
    if (f.defaultText !== undefined) extras.push(`default ${f.defaultText}`);
    else if (f.default !== undefined && f.default !== false && f.default !== '' && f.default !== 0) {
      extras.push(`default ${JSON.stringify(f.default)}`);
    }
    if (f.env?.length) extras.push(`env ${f.env.join(', ')}`);
    if (extras.length) text += ` (${extras.join('; ')})`;
    return `  ${left[i]!.padEnd(width)}   ${text}`;
  });
}

/** Help text for a command: usage line, description, subcommands, flags, global flags. */
export function helpText<G>(
  root: CommandSpec<G>,
  globalFlags: readonly FlagSpec[],
  path: readonly string[],
): string {
  const cmd = resolvePath(root, path);
  const name = ['berth', ...path].join(' ');
  const lines: string[] = [];
  const hasSubs = (cmd.subcommands?.length ?? 0) > 0;
  const hasFlags = (cmd.flags?.length ?? 0) > 0;
  const usage = [
    name,
    path.length === 0 ? '[global flags]' : '',
    hasSubs ? '<command>' : '',
    hasFlags ? '[flags]' : '',
    hasSubs ? '' : (cmd.argsUsage ?? ''),
  ]
    .filter(Boolean)
    .join(' ');
  lines.push(`Usage: ${usage}`, '');
  lines.push(cmd.description ?? cmd.summary);
  if (cmd.aliases?.length) lines.push('', `Aliases: ${[cmd.name, ...cmd.aliases].join(', ')}`);
  if (hasSubs) {
    lines.push('', 'Commands:');
    const subs = cmd.subcommands!;
    const label = (c: CommandSpec<G>) => [c.name, ...(c.aliases ?? [])].join(', ');
    const width = Math.max(...subs.map((c) => label(c).length));
    for (const c of subs) lines.push(`  ${label(c).padEnd(width)}   ${c.summary}`);
  }
  if (hasFlags) lines.push('', 'Flags:', ...flagLines(cmd.flags!));
  lines.push('', 'Global flags:', ...flagLines(globalFlags));
  if (hasSubs) lines.push('', `Run '${name} <command> --help' for more about a command.`);
  return `${lines.join('\n')}\n`;
}
