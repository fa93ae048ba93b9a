import { join } from 'node:path';
import {
  type Context,
  FailedPreconditionError,
  type InitContext,
  type InterfaceAdapter,
  type InterfaceVersion,
  InterfaceVersions,
  InvalidArgumentError,
  NotFoundError,
  type Platform,
  type PluginTypeId,
  type Registration,
  resolveInterface,
  SkipPluginError,
} from '@berth/api';
import { type Logger, nullLogger } from './log';

/** `<type>.<id>`: how config.toml, disabled_plugins and the plugin's directories name a plugin. */
export const pluginUri = (r: { type: string; id: string }): string => `${r.type}.${r.id}`;

/**
 * The InitContext the registry hands out: the api shape plus what a plugin may report
 * about itself to Introspection besides its exports.
 */
export interface PluginInitContext<C = unknown> extends InitContext<C> {
  readonly capabilities: string[];
  readonly platforms: Platform[];
  /** The daemon's logger, with the plugin's id as a field. */
  readonly log: Logger;
  /** Every plugin initialised so far and later (a live view, for Introspection). */
  plugins(): readonly PluginRecord[];
}

/** A registration whose init uses the daemon's richer context (berthd's own plugins). */
export interface DaemonRegistration<C = unknown, T = unknown> extends Registration<C, T> {
  init(ic: PluginInitContext<C>): Promise<T> | T;
}

export type PluginState = 'loaded' | 'skipped' | 'error';

/** One plugin as Introspection reports it (what `ctr plugins ls` prints). */
export interface PluginRecord {
  readonly type: PluginTypeId;
  readonly id: string;
  readonly uri: string;
  readonly requires: readonly PluginTypeId[];
  readonly config: unknown;
  readonly exports: Record<string, string>;
  readonly capabilities: string[];
  readonly platforms: Platform[];
  state: PluginState;
  /** The instance init returned (state 'loaded'). */
  instance?: unknown;
  /** Why the plugin is not loaded: a SkipPluginError or the init failure. */
  error?: Error;
}

export interface RegistryOptions {
  root: string;
  state: string;
  address: string;
  /** `<type>.<id>` of plugins not to load (config `disabled_plugins`). */
  disabled?: readonly string[];
  /** The `[plugins."<type>.<id>"]` table for a plugin, if config.toml has one. */
  pluginConfig?: (uri: string) => Record<string, unknown> | undefined;
  /** Merges a plugin's table over its defaults (validating it); a plain deep merge when absent. */
  mergeConfig?: (uri: string, defaults: unknown, table: Record<string, unknown>) => unknown;
  ctx?: Context;
  log?: Logger;
  /** Adapters from older interface versions (none yet: see berthInterfaceAdapters). */
  adapters?: readonly InterfaceAdapter<any, any>[];
}

/**
 * Checks each registration's interface version against the ones berthd offers: the same
 * version passes as is, an older one with an adapter is registered under the offered type
 * with its instance adapted, anything else throws InterfaceVersionError naming the plugin
 * and both versions (before any plugin starts, as a missing dependency does).
 */
export function checkInterfaceVersions(
  registrations: readonly Registration<any, any>[],
  adapters: readonly InterfaceAdapter<any, any>[] = [],
  offered: Readonly<Record<string, InterfaceVersion>> = InterfaceVersions,
): Registration<any, any>[] {
  return registrations.map((r) => {
    const { id, adapt } = resolveInterface(pluginUri(r), r.type, adapters, offered);
    if (id === r.type) return r;
    return { ...r, type: id, init: async (ic: InitContext<any>) => adapt(await r.init(ic)) };
  });
}

const ANY = '*';

/**
 * Orders registrations so every plugin comes after the plugins of the types it requires
 * (`*`: after every plugin that does not itself require `*`). Otherwise registration order
 * is kept. Throws naming the plugin on a duplicate, a cycle or a required type that no
 * registration provides; a type provided only by disabled plugins is not an error here:
 * the dependents fail at init with a message naming the disabled plugin.
 */
export function sortRegistrations(
  registrations: readonly Registration<any, any>[],
): Registration<any, any>[] {
  const seen = new Set<string>();
  const types = new Set<string>();
  for (const r of registrations) {
    if (!r.type) throw new InvalidArgumentError(`plugin registration with id "${r.id}": no type`);
    if (!r.id) throw new InvalidArgumentError(`plugin registration of type ${r.type}: no id`);
    const uri = pluginUri(r);
    if (seen.has(uri)) throw new InvalidArgumentError(`plugin ${uri}: registered twice`);
    seen.add(uri);
    types.add(r.type);
  }
  for (const r of registrations) {
    const requires = r.requires ?? [];
    if (requires.includes(ANY) && requires.length !== 1) {
      throw new InvalidArgumentError(`plugin ${pluginUri(r)}: "*" must be its only requirement`);
    }
    for (const t of requires) {
      if (t !== ANY && !types.has(t)) {
        throw new InvalidArgumentError(`plugin ${pluginUri(r)} requires ${t}, which no plugin provides`);
      }
    }
  }

  const dependencies = (r: Registration<any, any>): Registration<any, any>[] => {
    const requires = r.requires ?? [];
    if (requires.length === 1 && requires[0] === ANY) {
      return registrations.filter((o) => o !== r && !(o.requires ?? []).includes(ANY));
    }
    return registrations.filter((o) => o !== r && requires.includes(o.type));
  };

  const ordered: Registration<any, any>[] = [];
  const done = new Set<Registration<any, any>>();
  const path: Registration<any, any>[] = [];
  const visit = (r: Registration<any, any>): void => {
    if (done.has(r)) return;
    const at = path.indexOf(r);
    if (at !== -1) {
      const cycle = [...path.slice(at), r].map(pluginUri).join(' -> ');
      throw new InvalidArgumentError(`plugin ${pluginUri(r)}: dependency cycle ${cycle}`);
    }
    path.push(r);
    for (const d of dependencies(r)) visit(d);
    path.pop();
    done.add(r);
    ordered.push(r);
  };
  for (const r of registrations) visit(r);
  return ordered;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Deep-merges `over` onto a copy of `base`: tables merge, everything else replaces. */
export function mergeDeep(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? structuredClone(base) : over;
  const out: Record<string, unknown> = structuredClone(base);
  for (const [k, v] of Object.entries(over)) out[k] = k in out ? mergeDeep(out[k], v) : v;
  return out;
}

/**
 * Initialises plugins in dependency order and keeps each one's state for Introspection.
 * A plugin that throws SkipPluginError is reported skipped; any other throw is recorded as
 * its init error and the daemon carries on: dependents asking for it get an error naming it.
 */
export class PluginRegistry {
  private readonly records: PluginRecord[] = [];
  private readonly byType = new Map<string, PluginRecord[]>();
  private readonly disabled: Set<string>;
  private readonly disabledTypes = new Map<string, string[]>();
  private readonly ordered: Registration<any, any>[];
  private readonly log: Logger;

  constructor(
    registrations: readonly Registration<any, any>[],
    private readonly opts: RegistryOptions,
  ) {
    this.log = opts.log ?? nullLogger;
    this.disabled = new Set(opts.disabled ?? []);
    this.ordered = sortRegistrations(checkInterfaceVersions(registrations, opts.adapters)).filter((r) => {
      if (!this.disabled.has(pluginUri(r))) return true;
      const list = this.disabledTypes.get(r.type) ?? [];
      list.push(pluginUri(r));
      this.disabledTypes.set(r.type, list);
      return false;
    });
  }

  /** The registrations that will be (or were) initialised, in order. */
  get order(): readonly Registration<any, any>[] {
    return this.ordered;
  }

  /** Every plugin that was initialised (loaded, skipped or failed), in init order. */
  plugins(): readonly PluginRecord[] {
    return this.records;
  }

  /** Initialises every enabled plugin in order; never throws for a plugin's failure. */
  async initAll(): Promise<void> {
    for (const r of this.ordered) await this.initOne(r);
  }

  private async initOne(r: Registration<any, any>): Promise<void> {
    const uri = pluginUri(r);
    const table = this.opts.pluginConfig?.(uri);
    const record: PluginRecord = {
      type: r.type,
      id: r.id,
      uri,
      requires: [...(r.requires ?? [])],
      config: undefined,
      exports: {},
      capabilities: [],
      platforms: [],
      state: 'error',
    };
    this.records.push(record);
    const list = this.byType.get(r.type) ?? [];
    list.push(record);
    this.byType.set(r.type, list);

    const log = this.log.with({ type: r.type, id: uri });
    log.info(`loading plugin "${uri}"...`);
    try {
      const config =
        table === undefined
          ? structuredClone(r.config)
          : this.opts.mergeConfig
            ? this.opts.mergeConfig(uri, r.config, table)
            : mergeDeep(r.config, table);
      (record as { config: unknown }).config = config;
      const ic: PluginInitContext<unknown> = {
        root: join(this.opts.root, uri),
        state: join(this.opts.state, uri),
        config,
        address: this.opts.address,
        exports: record.exports,
        capabilities: record.capabilities,
        platforms: record.platforms,
        log,
        plugins: () => this.records,
        ctx: this.opts.ctx ?? {},
        get: async <T>(type: PluginTypeId) => this.get<T>(r, type),
        getAll: async <T>(type: PluginTypeId) => this.getAll<T>(r, type),
        getById: async <T>(type: PluginTypeId, id: string) => this.getById<T>(r, type, id),
      };
      record.instance = await r.init(ic);
      record.state = 'loaded';
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      record.error = e;
      if (e instanceof SkipPluginError) {
        record.state = 'skipped';
        log.with({ error: e.message }).info(`skip loading plugin "${uri}"...`);
      } else {
        record.state = 'error';
        log.with({ error: e.message }).warn(`failed to load plugin ${uri}`);
      }
    }
  }

  private checkRequired(asker: Registration<any, any>, type: PluginTypeId): void {
    const requires = asker.requires ?? [];
    if (!requires.includes(ANY) && !requires.includes(type)) {
      throw new FailedPreconditionError(
        `plugin ${pluginUri(asker)} asked for ${type}, which is not in its requires (${requires.join(', ') || 'none'})`,
      );
    }
  }

  private notLoaded(rec: PluginRecord): Error {
    const why = rec.error?.message ?? 'unknown error';
    const what = rec.state === 'skipped' ? 'was skipped' : 'failed to load';
    return new FailedPreconditionError(`plugin ${rec.uri} ${what}: ${why}`, { cause: rec.error });
  }

  private noneOfType(type: PluginTypeId): Error {
    const disabled = this.disabledTypes.get(type);
    if (disabled)
      return new NotFoundError(`no plugins registered for ${type}: ${disabled.join(', ')} disabled`);
    return new NotFoundError(`no plugins registered for ${type}`);
  }

  private get<T>(asker: Registration<any, any>, type: PluginTypeId): T {
    this.checkRequired(asker, type);
    const list = this.byType.get(type) ?? [];
    const loaded = list.find((p) => p.state === 'loaded');
    if (loaded) return loaded.instance as T;
    if (list.length > 0) throw this.notLoaded(list[0]!);
    throw this.noneOfType(type);
  }

  private getAll<T>(asker: Registration<any, any>, type: PluginTypeId): Map<string, T> {
    this.checkRequired(asker, type);
    const out = new Map<string, T>();
    for (const p of this.byType.get(type) ?? []) if (p.state === 'loaded') out.set(p.id, p.instance as T);
    return out;
  }

  private getById<T>(asker: Registration<any, any>, type: PluginTypeId, id: string): T {
    this.checkRequired(asker, type);
    const p = (this.byType.get(type) ?? []).find((x) => x.id === id);
    if (!p) {
      if (this.disabled.has(`${type}.${id}`)) throw new NotFoundError(`plugin ${type}.${id}: disabled`);
      throw new NotFoundError(`no ${type} plugins with id ${id}`);
    }
    if (p.state !== 'loaded') throw this.notLoaded(p);
    return p.instance as T;
  }

  /** Loaded instances of a type, in init order (the server collects gRPC services this way). */
  instancesOf<T>(type: PluginTypeId): { record: PluginRecord; instance: T }[] {
    return (this.byType.get(type) ?? [])
      .filter((p) => p.state === 'loaded')
      .map((p) => ({ record: p, instance: p.instance as T }));
  }

  /** Closes loaded instances that have a close() in reverse init order; logs, never throws. */
  async close(): Promise<void> {
    for (let i = this.records.length - 1; i >= 0; i--) {
      const p = this.records[i]!;
      const inst = p.instance as { close?: () => unknown } | undefined;
      if (p.state !== 'loaded' || typeof inst?.close !== 'function') continue;
      try {
        await inst.close();
      } catch (err) {
        this.log.with({ id: p.uri, error: (err as Error).message }).error('failed to close plugin');
      }
    }
  }
}
