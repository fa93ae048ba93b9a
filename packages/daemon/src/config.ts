import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { InvalidArgumentError, type Registration } from '@berth/api';
import { parseLogLevel } from './log';
import { pluginUri } from './registry';

// smol-toml ships a CommonJS build, but its types are declared as an ES module, which a
// CommonJS package cannot import; these are the two functions used.
const { parse: parseToml, stringify: stringifyToml } = require('smol-toml') as {
  parse(text: string): Record<string, unknown>;
  stringify(doc: Record<string, unknown>): string;
};

export const DEFAULT_ROOT = '/var/lib/berth';
export const DEFAULT_STATE = '/run/berth';
export const DEFAULT_ADDRESS = '/run/berth/berth.sock';
export const DEFAULT_CONFIG_PATH = '/etc/berth/config.toml';
/** containerd's defaults.DefaultMaxRecvMsgSize / DefaultMaxSendMsgSize: 16 MiB. */
export const DEFAULT_MAX_MESSAGE_SIZE = 16 << 20;
/** The config.toml version berth reads (containerd 1.x's version 2 shape). */
export const CONFIG_VERSION = 2;

export interface ProxyPluginConfig {
  type: string;
  address: string;
}

/** config.toml, in containerd's version 2 shape (the TOML keys are noted where they differ). */
export interface DaemonConfig {
  version: number;
  /** The file this config was read from ('' for defaults): module plugins resolve beside it. */
  configFile: string;
  root: string;
  state: string;
  /** `disabled_plugins`: `<type>.<id>` of plugins not to load. */
  disabledPlugins: string[];
  /** `required_plugins`: the daemon refuses to start unless these load. */
  requiredPlugins: string[];
  grpc: {
    address: string;
    uid: number;
    gid: number;
    /** `max_recv_message_size` */
    maxRecvMessageSize: number;
    /** `max_send_message_size` */
    maxSendMessageSize: number;
  };
  ttrpc: { address: string; uid: number; gid: number };
  debug: { level: string; format: string };
  /** `[plugins."<type>.<id>"]` tables, as written (merged over defaults when a plugin loads). */
  plugins: Record<string, Record<string, unknown>>;
  /** `[proxy_plugins.<name>]`: external plugins reached over a unix socket. */
  proxyPlugins: Record<string, ProxyPluginConfig>;
}

export function defaultConfig(): DaemonConfig {
  return {
    version: CONFIG_VERSION,
    configFile: '',
    root: DEFAULT_ROOT,
    state: DEFAULT_STATE,
    disabledPlugins: [],
    requiredPlugins: [],
    grpc: {
      address: DEFAULT_ADDRESS,
      uid: 0,
      gid: 0,
      maxRecvMessageSize: DEFAULT_MAX_MESSAGE_SIZE,
      maxSendMessageSize: DEFAULT_MAX_MESSAGE_SIZE,
    },
    ttrpc: { address: '', uid: 0, gid: 0 },
    debug: { level: '', format: '' },
    plugins: {},
    proxyPlugins: {},
  };
}

type Kind = 'string' | 'int' | 'bool' | 'string[]';

/** A known key: where it goes in DaemonConfig, or `ignored` for containerd keys berth does not use. */
interface Field {
  kind: Kind;
  set?: (c: DaemonConfig, v: any) => void;
  check?: (v: any) => string | undefined;
}

const ignored = (kind: Kind): Field => ({ kind });
const nonNegative = (v: number): string | undefined => (v < 0 ? 'must not be negative' : undefined);
const positive = (v: number): string | undefined => (v <= 0 ? 'must be greater than 0' : undefined);
const pluginUriCheck = (v: string[]): string | undefined => {
  const bad = v.find((p) => p.split('.').length < 4);
  return bad === undefined ? undefined : `invalid plugin URI "${bad}", expected io.containerd.x.vx.<id>`;
};

const TOP: Record<string, Field> = {
  version: {
    kind: 'int',
    set: (c, v) => {
      c.version = v;
    },
    check: (v) =>
      v === CONFIG_VERSION ? undefined : `unsupported config version (berth reads version ${CONFIG_VERSION})`,
  },
  root: {
    kind: 'string',
    set: (c, v) => {
      c.root = v;
    },
  },
  state: {
    kind: 'string',
    set: (c, v) => {
      c.state = v;
    },
  },
  disabled_plugins: {
    kind: 'string[]',
    set: (c, v) => {
      c.disabledPlugins = v;
    },
    check: pluginUriCheck,
  },
  required_plugins: {
    kind: 'string[]',
    set: (c, v) => {
      c.requiredPlugins = v;
    },
    check: pluginUriCheck,
  },
  temp: ignored('string'),
  plugin_dir: ignored('string'),
  oom_score: ignored('int'),
  imports: ignored('string[]'),
};

const SECTIONS: Record<string, Record<string, Field>> = {
  grpc: {
    address: {
      kind: 'string',
      set: (c, v) => {
        c.grpc.address = v;
      },
      check: (v) => (v === '' ? 'must not be empty' : undefined),
    },
    uid: {
      kind: 'int',
      set: (c, v) => {
        c.grpc.uid = v;
      },
      check: nonNegative,
    },
    gid: {
      kind: 'int',
      set: (c, v) => {
        c.grpc.gid = v;
      },
      check: nonNegative,
    },
    max_recv_message_size: {
      kind: 'int',
      set: (c, v) => {
        c.grpc.maxRecvMessageSize = v;
      },
      check: positive,
    },
    max_send_message_size: {
      kind: 'int',
      set: (c, v) => {
        c.grpc.maxSendMessageSize = v;
      },
      check: positive,
    },
    tcp_address: ignored('string'),
    tcp_tls_ca: ignored('string'),
    tcp_tls_cert: ignored('string'),
    tcp_tls_key: ignored('string'),
  },
  ttrpc: {
    address: {
      kind: 'string',
      set: (c, v) => {
        c.ttrpc.address = v;
      },
    },
    uid: {
      kind: 'int',
      set: (c, v) => {
        c.ttrpc.uid = v;
      },
      check: nonNegative,
    },
    gid: {
      kind: 'int',
      set: (c, v) => {
        c.ttrpc.gid = v;
      },
      check: nonNegative,
    },
  },
  debug: {
    level: {
      kind: 'string',
      set: (c, v) => {
        c.debug.level = v;
      },
      check: (v) => {
        if (v === '') return undefined;
        try {
          parseLogLevel(v);
          return undefined;
        } catch (e) {
          return (e as Error).message;
        }
      },
    },
    format: {
      kind: 'string',
      set: (c, v) => {
        c.debug.format = v;
      },
      check: (v) => (v === '' || v === 'text' ? undefined : 'berth logs only in the "text" (logfmt) format'),
    },
    address: ignored('string'),
    uid: ignored('int'),
    gid: ignored('int'),
  },
  metrics: { address: ignored('string'), grpc_histogram: ignored('bool') },
  cgroup: { path: ignored('string') },
};

/** Tables containerd knows that berth accepts and ignores, whatever their content. */
const IGNORED_TABLES = new Set(['timeouts', 'stream_processors']);

/** A value as TOML would spell it, for error messages. */
function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  if (typeof v === 'object' && v !== null) return '{...}';
  return String(v);
}

const KIND_NAME: Record<Kind, string> = {
  string: 'a string',
  int: 'an integer',
  bool: 'a boolean',
  'string[]': 'an array of strings',
};

function kindOf(v: unknown): Kind | 'other' {
  if (typeof v === 'string') return 'string';
  if (typeof v === 'number' && Number.isInteger(v)) return 'int';
  if (typeof v === 'boolean') return 'bool';
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return 'string[]';
  return 'other';
}

export interface ConfigIssue {
  key: string;
  message: string;
}

export interface LoadedConfig {
  config: DaemonConfig;
  /** Unknown or ignored keys, for the daemon to log as warnings. */
  warnings: string[];
}

function invalid(file: string, key: string, value: unknown, why: string): InvalidArgumentError {
  return new InvalidArgumentError(`invalid config ${file}: ${key} = ${show(value)}: ${why}`);
}

const isTable = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

function applyField(
  c: DaemonConfig,
  field: Field,
  file: string,
  key: string,
  value: unknown,
  warnings: string[],
): void {
  if (kindOf(value) !== field.kind) throw invalid(file, key, value, `expected ${KIND_NAME[field.kind]}`);
  const why = field.check?.(value);
  if (why !== undefined) throw invalid(file, key, value, why);
  if (field.set) field.set(c, value);
  else warnings.push(`config key ${key} is not used by berth, ignored`);
}

/** Applies a parsed config.toml document over defaults; InvalidArgument names the key and value. */
export function configFromToml(doc: Record<string, unknown>, file = 'config.toml'): LoadedConfig {
  const c = defaultConfig();
  const warnings: string[] = [];
  if (doc.version === undefined)
    warnings.push(`config ${file} has no version, reading it as version ${CONFIG_VERSION}`);
  for (const [key, value] of Object.entries(doc)) {
    const top = TOP[key];
    if (top) {
      applyField(c, top, file, key, value, warnings);
      continue;
    }
    const section = SECTIONS[key];
    if (section) {
      if (!isTable(value)) throw invalid(file, key, value, 'expected a table');
      for (const [sub, v] of Object.entries(value)) {
        const f = section[sub];
        if (f) applyField(c, f, file, `${key}.${sub}`, v, warnings);
        else warnings.push(`unknown config key ${key}.${sub}, ignored`);
      }
      continue;
    }
    if (key === 'plugins') {
      if (!isTable(value)) throw invalid(file, key, value, 'expected a table');
      for (const [uri, table] of Object.entries(value)) {
        const name = `plugins.${JSON.stringify(uri)}`;
        if (!isTable(table)) throw invalid(file, name, table, 'expected a table');
        if (uri.split('.').length < 4)
          throw invalid(file, name, table, `invalid plugin URI "${uri}", expected io.containerd.x.vx.<id>`);
        c.plugins[uri] = table;
      }
      continue;
    }
    if (key === 'proxy_plugins') {
      if (!isTable(value)) throw invalid(file, key, value, 'expected a table');
      for (const [name, table] of Object.entries(value)) {
        const at = `proxy_plugins.${name}`;
        if (!isTable(table)) throw invalid(file, at, table, 'expected a table');
        const { type, address, ...rest } = table;
        if (typeof type !== 'string' || type === '')
          throw invalid(file, `${at}.type`, type, 'expected a plugin type');
        if (typeof address !== 'string' || address === '')
          throw invalid(file, `${at}.address`, address, 'expected a socket path');
        for (const k of Object.keys(rest)) warnings.push(`unknown config key ${at}.${k}, ignored`);
        c.proxyPlugins[name] = { type, address };
      }
      continue;
    }
    if (IGNORED_TABLES.has(key)) {
      warnings.push(`config key ${key} is not used by berth, ignored`);
      continue;
    }
    warnings.push(`unknown config key ${key}, ignored`);
  }
  return { config: c, warnings };
}

/** Parses config.toml text; syntax errors are InvalidArgument naming the file, line and column. */
export function parseConfig(text: string, file = 'config.toml'): LoadedConfig {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    const e = err as Error & { line?: number; column?: number };
    const where = e.line !== undefined ? `:${e.line}:${e.column}` : '';
    const first = e.message.split('\n')[0];
    throw new InvalidArgumentError(`invalid config ${file}${where}: ${first}`, { cause: err });
  }
  return configFromToml(doc, file);
}

/**
 * Reads config.toml. A missing file is fine when it is the default path (containerd
 * starts with defaults then) and an error when the path was given explicitly.
 */
export function loadConfig(path: string, explicit: boolean): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !explicit)
      return { config: defaultConfig(), warnings: [] };
    throw new InvalidArgumentError(`failed to load config ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const loaded = parseConfig(text, path);
  loaded.config.configFile = resolve(path);
  return loaded;
}

function typeName(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a date';
  if (isTable(v)) return 'a table';
  if (typeof v === 'number') return 'a number';
  return `a ${typeof v}`;
}

/**
 * Merges a `[plugins."<uri>"]` table over a plugin's defaults. A key the defaults have must
 * keep its type (InvalidArgument naming `plugins."<uri>".key` and the value); keys the
 * defaults lack are kept and reported through `warn`. A default that is an empty table
 * is a free-form map (any keys).
 */
export function mergePluginConfig(
  uri: string,
  defaults: unknown,
  table: Record<string, unknown>,
  warn: (msg: string) => void = () => {},
): unknown {
  const walk = (base: unknown, over: unknown, at: string): unknown => {
    if (!isTable(base)) return over;
    if (!isTable(over))
      throw new InvalidArgumentError(`invalid config: ${at} = ${show(over)}: expected a table`);
    const out: Record<string, unknown> = structuredClone(base);
    const freeForm = Object.keys(base).length === 0;
    for (const [k, v] of Object.entries(over)) {
      const path = `${at}.${k}`;
      if (!(k in base)) {
        if (!freeForm) warn(`unknown config key ${path}`);
        out[k] = v;
        continue;
      }
      const d = base[k];
      const sameType =
        d === undefined ||
        d === null ||
        (typeof d === 'number' && typeof v === 'number') ||
        (typeof d !== 'number' && typeName(d) === typeName(v));
      if (!sameType)
        throw new InvalidArgumentError(`invalid config: ${path} = ${show(v)}: expected ${typeName(d)}`);
      out[k] = walk(d, v, path);
    }
    return out;
  };
  if (defaults === undefined) {
    for (const k of Object.keys(table))
      warn(`unknown config key plugins.${JSON.stringify(uri)}.${k}: the plugin takes no configuration`);
    return structuredClone(table);
  }
  return walk(defaults, table, `plugins.${JSON.stringify(uri)}`);
}

/** The TOML document for a config: the shape `berthd config default` prints. */
export function configToToml(c: DaemonConfig, registrations: readonly Registration<any, any>[] = []): string {
  const plugins: Record<string, unknown> = {};
  for (const r of registrations) {
    if (r.config === undefined) continue;
    plugins[pluginUri(r)] = r.config;
  }
  for (const [uri, table] of Object.entries(c.plugins)) {
    const r = registrations.find((x) => pluginUri(x) === uri);
    plugins[uri] = r?.config === undefined ? table : mergePluginConfig(uri, r.config, table);
  }
  const doc = {
    version: c.version,
    root: c.root,
    state: c.state,
    disabled_plugins: c.disabledPlugins,
    required_plugins: c.requiredPlugins,
    grpc: {
      address: c.grpc.address,
      uid: c.grpc.uid,
      gid: c.grpc.gid,
      max_recv_message_size: c.grpc.maxRecvMessageSize,
      max_send_message_size: c.grpc.maxSendMessageSize,
    },
    ttrpc: { address: c.ttrpc.address, uid: c.ttrpc.uid, gid: c.ttrpc.gid },
    debug: { level: c.debug.level, format: c.debug.format },
    plugins,
    proxy_plugins: c.proxyPlugins,
  };
  return stringifyToml(doc);
}
