import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { CniConfigError } from './errors';
import { isValidVersion } from './version';

/** One plugin's entry in a list: the JSON object as written, `type` required. */
export type PluginConf = Record<string, unknown> & { type: string };

/** A network: a conflist, or a single-plugin conf converted to a one-entry list as libcni does. */
export interface NetworkConfigList {
  name: string;
  cniVersion: string;
  disableCheck: boolean;
  plugins: PluginConf[];
  /** The list's JSON bytes, cached beside each result so DEL can replay the config of ADD. */
  bytes: Buffer;
  /** Where it was read from ('' when parsed from bytes). */
  file: string;
}

export const CONF_EXTENSIONS = ['.conf', '.conflist', '.json'];

/** The config files of `dir` in lexical order (libcni's ConfFiles + go-cni's sort). */
export async function listConfFiles(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).filter((n) => CONF_EXTENSIONS.includes(extname(n))).sort();
  const files: string[] = [];
  for (const n of names) {
    const p = join(dir, n);
    const st = await stat(p).catch(() => undefined);
    if (st?.isFile()) files.push(p);
  }
  return files;
}

/** Reads one file: a `.conflist` as a list, anything else as a single plugin's conf. */
export async function loadConfFile(file: string): Promise<NetworkConfigList> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new CniConfigError(file, `failed to read CNI config file ${file}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (file.endsWith('.conflist')) return parseConfList(bytes, file);
  return confToList(bytes, file);
}

/** libcni's ConfListFromBytes: name, cniVersion, disableCheck and a non-empty plugins array. */
export function parseConfList(bytes: Buffer, file = ''): NetworkConfigList {
  const fail = (why: string): never => {
    throw new CniConfigError(file, `failed to load CNI config list file ${file || '<bytes>'}: ${why}`);
  };
  const raw = parseObject(bytes, fail, 'error parsing configuration list');
  const name = raw.name;
  if (name === undefined) fail('error parsing configuration list: no name');
  if (typeof name !== 'string')
    return fail(`error parsing configuration list: invalid name type ${typeof name}`);
  if (!NAME_RE.test(name)) fail(`invalid network name "${name}": must match ${NAME_RE.source}`);
  const cniVersion = raw.cniVersion ?? '';
  if (typeof cniVersion !== 'string')
    return fail(`error parsing configuration list: invalid cniVersion type ${typeof cniVersion}`);
  if (cniVersion !== '' && !isValidVersion(cniVersion)) fail(`invalid cniVersion "${cniVersion}"`);
  let disableCheck = false;
  const dc = raw.disableCheck;
  // libcni accepts a bool, and newer libcni also the strings "true"/"false"
  if (typeof dc === 'boolean') disableCheck = dc;
  else if (dc === 'true' || dc === 'false') disableCheck = dc === 'true';
  else if (dc !== undefined) fail(`error parsing configuration list: invalid disableCheck type ${typeof dc}`);
  if (!('plugins' in raw)) fail(`error parsing configuration list: no 'plugins' key`);
  const plugins = raw.plugins;
  if (!Array.isArray(plugins)) return fail(`error parsing configuration list: invalid 'plugins' type`);
  if (plugins.length === 0) fail('error parsing configuration list: no plugins in list');
  plugins.forEach((p, i) => {
    if (typeof p !== 'object' || p === null || Array.isArray(p))
      fail(`failed to parse plugin config ${i}: not an object`);
    const type = (p as Record<string, unknown>).type;
    if (typeof type !== 'string' || type === '')
      fail(`failed to parse plugin config ${i}: error parsing configuration: missing 'type'`);
    if ((type as string).includes('/'))
      fail(`failed to parse plugin config ${i}: invalid plugin name: ${type}`);
  });
  return { name, cniVersion, disableCheck, plugins: plugins as PluginConf[], bytes, file };
}

/** libcni's ConfFromBytes + ConfListFromConf: a single plugin becomes a list of one. */
export function confToList(bytes: Buffer, file = ''): NetworkConfigList {
  const fail = (why: string): never => {
    throw new CniConfigError(file, `failed to load CNI config file ${file || '<bytes>'}: ${why}`);
  };
  const raw = parseObject(bytes, fail, 'error parsing configuration');
  // also catches a conflist written into a .conf file
  if (typeof raw.type !== 'string' || raw.type === '')
    throw new CniConfigError(file, `network type not found in ${file || '<bytes>'}`);
  const list = { name: raw.name, cniVersion: raw.cniVersion, plugins: [raw] };
  return { ...parseConfList(Buffer.from(JSON.stringify(list)), file), file };
}

function parseObject(bytes: Buffer, fail: (why: string) => never, what: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    return fail(`${what}: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    return fail(`${what}: not a JSON object`);
  return raw as Record<string, unknown>;
}

// libcni's utils.ValidateNetworkName / ValidateContainerID
export const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
