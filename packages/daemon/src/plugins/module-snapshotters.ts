import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  type InterfaceAdapter,
  InterfaceVersionError,
  InvalidArgumentError,
  PluginType,
  parseInterfaceId,
  resolveInterface,
  type Snapshotter,
  type SnapshotterPlugin,
} from '@berth/api';
import type { DaemonConfig } from '../config';
import type { DaemonRegistration } from '../registry';
import { hostPlatform } from './platform';

/** The key of a `[plugins."<type>.<id>"]` table that names a package to load the plugin from. */
export const MODULE_KEY = 'module';

const SNAPSHOTTER_METHODS = [
  'stat',
  'update',
  'usage',
  'mounts',
  'prepare',
  'view',
  'commit',
  'remove',
  'walk',
  'close',
] as const;

/**
 * Where a `module = "<package>"` is looked for, in order: the directory of config.toml (so a
 * package installed, or a relative path written, beside the config is found), the directory
 * berthd was started in, then berthd's own node_modules (a package installed next to
 * @berth/daemon).
 */
export function moduleSearchPaths(config: DaemonConfig): string[] {
  const paths = [config.configFile ? dirname(config.configFile) : '', process.cwd(), __dirname];
  return [...new Set(paths.filter((p) => p !== ''))];
}

/** A `[plugins."<uri>"]` table without the `module` key: the options the module itself reads. */
export function moduleOptions(
  table: Record<string, unknown> | undefined,
): Record<string, unknown> | undefined {
  if (table === undefined || !(MODULE_KEY in table)) return table;
  const { [MODULE_KEY]: _module, ...rest } = table;
  return rest;
}

function invalid(uri: string, spec: string, why: string, cause?: unknown): InvalidArgumentError {
  return new InvalidArgumentError(
    `plugins.${JSON.stringify(uri)}.${MODULE_KEY} = ${JSON.stringify(spec)}: ${why}`,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * Loads the module of one `[plugins."io.containerd.snapshotter.v1.<id>"] module = ...` table
 * and checks the interface version it declares. Throws (so berthd does not start) when the
 * package cannot be found or loaded, exports no snapshotter plugin, or implements a version
 * berthd neither offers nor adapts (InterfaceVersionError naming both).
 */
export function loadSnapshotterModule(
  uri: string,
  spec: string,
  paths: readonly string[],
  adapters: readonly InterfaceAdapter<any, any>[] = [],
): { plugin: SnapshotterPlugin<any>; resolved: string; adapt: (impl: unknown) => unknown } {
  let resolved: string;
  try {
    resolved = require.resolve(spec, { paths: [...paths] });
  } catch (err) {
    throw invalid(uri, spec, `cannot find the package (looked from ${paths.join(', ')})`, err);
  }
  let mod: unknown;
  try {
    mod = require(resolved);
  } catch (err) {
    throw invalid(uri, spec, `loading ${resolved} failed: ${(err as Error).message}`, err);
  }
  const exported = mod as { plugin?: unknown; default?: { plugin?: unknown } } | undefined;
  const plugin = (exported?.plugin ?? exported?.default?.plugin) as SnapshotterPlugin<any> | undefined;
  if (typeof plugin !== 'object' || plugin === null || typeof plugin.init !== 'function')
    throw invalid(uri, spec, `${resolved} exports no "plugin" with an init function`);
  const declared: unknown = plugin.implements;
  if (typeof declared !== 'string' || parseInterfaceId(declared) === undefined)
    throw invalid(
      uri,
      spec,
      `the plugin declares no interface version (implements = ${JSON.stringify(declared)}, expected e.g. "${PluginType.Snapshot}")`,
    );
  if (parseInterfaceId(declared)!.family !== parseInterfaceId(PluginType.Snapshot)!.family)
    throw new InterfaceVersionError(uri, declared, PluginType.Snapshot);
  const { adapt } = resolveInterface(uri, declared, adapters);
  return { plugin, resolved, adapt };
}

function checkSnapshotter(uri: string, impl: unknown): Snapshotter {
  const missing = SNAPSHOTTER_METHODS.filter(
    (m) => typeof (impl as Record<string, unknown>)?.[m] !== 'function',
  );
  if (missing.length > 0)
    throw new InvalidArgumentError(
      `plugin ${uri}: init returned no snapshotter (missing ${missing.join(', ')})`,
    );
  return impl as Snapshotter;
}

/**
 * One registration per `[plugins."<type>.<id>"]` table with a `module` key: a snapshotter
 * from an installed package, run in berthd's process and wrapped as the built-in ones are
 * (metadata namespaces, GC, Introspection). Modules are loaded here, at start, so a missing
 * package or a version mismatch stops berthd before any plugin runs.
 */
export function moduleRegistrations(
  config: DaemonConfig,
  adapters: readonly InterfaceAdapter<any, any>[] = [],
): DaemonRegistration<any, Snapshotter>[] {
  const out: DaemonRegistration<any, Snapshotter>[] = [];
  const paths = moduleSearchPaths(config);
  for (const [uri, table] of Object.entries(config.plugins)) {
    if (!(MODULE_KEY in table) || config.disabledPlugins.includes(uri)) continue;
    const spec = table[MODULE_KEY];
    if (typeof spec !== 'string' || spec === '')
      throw new InvalidArgumentError(
        `invalid config: plugins.${JSON.stringify(uri)}.${MODULE_KEY} = ${JSON.stringify(spec)}: expected a package name or path`,
      );
    const type = uri.slice(0, uri.lastIndexOf('.'));
    const id = uri.slice(uri.lastIndexOf('.') + 1);
    if (type !== PluginType.Snapshot)
      throw invalid(
        uri,
        spec,
        parseInterfaceId(type)?.family === parseInterfaceId(PluginType.Snapshot)!.family
          ? `berthd offers ${PluginType.Snapshot}: name the plugin "${PluginType.Snapshot}.${id}"`
          : `only snapshotters (${PluginType.Snapshot}) load from a module`,
      );
    const { plugin, resolved, adapt } = loadSnapshotterModule(uri, spec, paths, adapters);
    out.push({
      type: PluginType.Snapshot,
      id,
      config: plugin.config,
      init: async (ic) => {
        ic.platforms.push(hostPlatform());
        ic.exports.module = resolved;
        ic.exports.implements = plugin.implements;
        mkdirSync(ic.root, { recursive: true, mode: 0o700 });
        return checkSnapshotter(uri, adapt(await plugin.init(ic)));
      },
    });
  }
  return out;
}
