import { chmodSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  FailedPreconditionError,
  type InterfaceAdapter,
  InvalidArgumentError,
  type Registration,
} from '@berth/api';
import { builtins } from './builtins';
import { type DaemonConfig, mergePluginConfig } from './config';
import { type Logger, nullLogger } from './log';
import { moduleOptions, moduleRegistrations } from './plugins/module-snapshotters';
import { isProxyType, proxyRegistrations } from './plugins/proxy';
import { PluginRegistry } from './registry';
import { GrpcServer, isGrpcService, socketPath } from './server/grpc-server';
import { REVISION, VERSION } from './version';

export interface DaemonOptions {
  log?: Logger;
  /** The plugins to load; builtins() by default (tests pass their own). */
  registrations?: readonly Registration<any, any>[];
  /** How long shutdown waits for in-flight calls before cancelling them. */
  shutdownGraceMs?: number;
}

/** A running berthd: its socket, its plugins, and how to stop it. */
export interface Daemon {
  readonly address: string;
  readonly config: DaemonConfig;
  readonly registry: PluginRegistry;
  /** gRPC methods served straight from HTTP/2 rather than through grpc-js. */
  readonly fastPaths: readonly string[];
  /** Stops accepting calls, finishes in-flight ones, closes plugins, removes the socket. */
  stop(): Promise<void>;
}

/**
 * Adapters that let plugins built for an older interface version load into this berthd. Every
 * interface is at its first version, so there are none; a v2 of an interface adds its
 * adapter from v1 here (see @berth/api's README, "Interface versions").
 */
export const interfaceAdapters: readonly InterfaceAdapter<any, any>[] = [];

/** containerd's CreateTopLevelDirectories: root 0700, state 0711, and they must differ. */
export function createTopLevelDirectories(config: DaemonConfig): void {
  if (config.root === '') throw new InvalidArgumentError('root must be specified');
  if (config.state === '') throw new InvalidArgumentError('state must be specified');
  if (resolve(config.root) === resolve(config.state)) {
    throw new InvalidArgumentError('root and state must be different paths');
  }
  mkdirSync(config.root, { recursive: true, mode: 0o700 });
  chmodSync(config.root, 0o700);
  mkdirSync(config.state, { recursive: true, mode: 0o711 });
}

/**
 * Starts berthd: loads the plugins in dependency order, registers every plugin that
 * offers a gRPC service and serves them on the configured unix socket.
 */
export async function startDaemon(config: DaemonConfig, opts: DaemonOptions = {}): Promise<Daemon> {
  const log = opts.log ?? nullLogger;
  const path = socketPath(config.grpc.address);
  createTopLevelDirectories(config);
  log.with({ version: VERSION, revision: REVISION }).info('starting berthd');
  for (const [name, pp] of Object.entries(config.proxyPlugins)) {
    if (!isProxyType(pp.type)) log.with({ name, type: pp.type }).warn('unknown proxy plugin type, ignored');
  }

  const registrations = [
    ...(opts.registrations ?? builtins()),
    ...proxyRegistrations(config.proxyPlugins),
    ...moduleRegistrations(config, interfaceAdapters),
  ];
  const registry = new PluginRegistry(registrations, {
    root: config.root,
    state: config.state,
    address: path,
    disabled: config.disabledPlugins,
    adapters: interfaceAdapters,
    pluginConfig: (uri) => moduleOptions(config.plugins[uri]),
    mergeConfig: (uri, defaults, table) => mergePluginConfig(uri, defaults, table, (msg) => log.warn(msg)),
    log,
  });
  for (const uri of Object.keys(config.plugins)) {
    if (!registry.order.some((r) => `${r.type}.${r.id}` === uri) && !config.disabledPlugins.includes(uri)) {
      log.with({ id: uri }).warn('config has a section for a plugin berthd does not have, ignored');
    }
  }

  const server = new GrpcServer({
    maxRecvMessageSize: config.grpc.maxRecvMessageSize,
    maxSendMessageSize: config.grpc.maxSendMessageSize,
    log,
  });
  try {
    await registry.initAll();
    const required = config.requiredPlugins.filter(
      (uri) => !registry.plugins().some((p) => p.uri === uri && p.state === 'loaded'),
    );
    if (required.length > 0) {
      const why = required.map((uri) => {
        const p = registry.plugins().find((x) => x.uri === uri);
        return p ? `${uri}: ${p.error?.message ?? p.state}` : `${uri}: not included`;
      });
      throw new FailedPreconditionError(`required plugins did not load: ${why.join('; ')}`);
    }
    for (const p of registry.plugins()) {
      if (p.state === 'loaded' && isGrpcService(p.instance)) server.register(p.instance);
    }
    await server.listen(path, config.grpc.uid, config.grpc.gid);
    // Every plugin is loaded and registered: health checks may now say so.
    server.setServing(true);
  } catch (err) {
    await server.shutdown(0).catch(() => {});
    await registry.close();
    throw err;
  }
  log.with({ address: path }).info('serving...');

  let stopping: Promise<void> | undefined;
  return {
    address: path,
    config,
    registry,
    fastPaths: server.fastPaths,
    stop: () => {
      stopping ??= (async () => {
        log.info('stopping berthd');
        await server.shutdown(opts.shutdownGraceMs ?? 5000);
        await registry.close();
        log.info('berthd stopped');
      })();
      return stopping;
    },
  };
}
