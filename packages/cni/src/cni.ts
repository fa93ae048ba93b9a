import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '@berth/api';
import { type CacheEntry, readCacheEntries, removeCache, writeCache } from './cache';
import { listConfFiles, loadConfFile, NAME_RE, type NetworkConfigList, parseConfList } from './config';
import { type CniCommand, CniConfigError, CniPluginError } from './errors';
import { execPlugin, findPlugin } from './invoke';
import { netnsExists } from './netns';
import { type NetworkAttachment, toAttachment } from './result';
import { compareVersions } from './version';

export interface CniOptions {
  /** Plugin search path, in order (containerd's bin_dir). */
  binDirs: string[];
  /** *.conf, *.conflist, *.json, read in lexical order. */
  confDir: string;
  /** How many networks to use (containerd's max_conf_num); default 1, 0 or less: all. */
  maxConfNum?: number;
  /** Result cache root, libcni's layout: results/<net>-<containerId>-<ifName>. */
  cacheDir: string;
  /** Interface name prefix: 'eth' gives eth0, eth1 ... (default 'eth'). */
  ifPrefix?: string;
  /** Also bring up `lo` in the namespace (go-cni's WithLoNetwork); its attachment comes last. */
  loopback?: boolean;
  /** Per plugin execution; the plugin is killed after it (default 120 s). */
  pluginTimeoutMs?: number;
}

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp' | 'sctp';
  hostIP?: string;
}

/** The bandwidth plugin's runtimeConfig (bits per second, bits). */
export interface BandwidthLimits {
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

export interface SetupOptions {
  /** CNI_ARGS, in insertion order: K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID, IgnoreUnknown=1 ... */
  args?: Record<string, string>;
  /** runtimeConfig.portMappings, given to plugins declaring the portMappings capability. */
  portMappings?: PortMapping[];
  /** runtimeConfig.bandwidth, given to plugins declaring the bandwidth capability. */
  bandwidth?: BandwidthLimits;
  /** Any other capability argument (dns, ipRanges, aliases ...), by capability name. */
  capabilityArgs?: Record<string, unknown>;
}

export interface CniStatus {
  ready: boolean;
  reason: string;
  message: string;
  /** The last load's problem, containerd's `lastCNILoadStatus` ('OK' when none). */
  lastLoadStatus: string;
}

interface Network {
  list: NetworkConfigList;
  ifName: string;
}

interface RuntimeConf {
  containerId: string;
  netns: string;
  ifName: string;
  args: [string, string][];
  capabilityArgs: Record<string, unknown>;
}

// go-cni's loopback network, exactly as it writes it
const LOOPBACK = parseConfList(
  Buffer.from('{"cniVersion":"0.3.1","name":"cni-loopback","plugins":[{"type":"loopback"}]}'),
);

const DEFAULT_TIMEOUT_MS = 120_000;

/**
 * go-cni for berth: the networks of a conf dir, attached to and detached from network
 * namespaces through the plugin binaries, with libcni's result cache so DEL replays the
 * config and result of ADD even after a restart or a config change.
 */
export class Cni {
  private nets: Network[] = [];
  private errors: CniConfigError[] = [];
  private lastLoad = 'cni config load not attempted';
  private readonly timeoutMs: number;

  constructor(private readonly opts: CniOptions) {
    if (!Array.isArray(opts.binDirs) || opts.binDirs.length === 0)
      throw new InvalidArgumentError('cni: binDirs must name at least one plugin directory');
    if (!opts.confDir) throw new InvalidArgumentError('cni: confDir is required');
    if (!opts.cacheDir) throw new InvalidArgumentError('cni: cacheDir is required');
    this.timeoutMs = opts.pluginTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /**
   * (Re)reads confDir. A file that does not parse is skipped and kept in loadErrors() (the
   * next good file takes its place); the networks in use change only when the read is done.
   */
  async load(): Promise<void> {
    const errors: CniConfigError[] = [];
    let files: string[] = [];
    try {
      files = await listConfFiles(this.opts.confDir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        errors.push(
          new CniConfigError(this.opts.confDir, `failed to read config file: ${(e as Error).message}`, {
            cause: e,
          }),
        );
      }
    }
    const max = this.opts.maxConfNum ?? 1;
    const prefix = this.opts.ifPrefix ?? 'eth';
    const nets: Network[] = [];
    for (const f of files) {
      if (max > 0 && nets.length >= max) break;
      try {
        const list = await loadConfFile(f);
        nets.push({ list, ifName: `${prefix}${nets.length}` });
      } catch (e) {
        if (e instanceof CniConfigError) errors.push(e);
        else
          errors.push(new CniConfigError(f, `failed to load CNI config file ${f}: ${(e as Error).message}`));
      }
    }
    this.nets = nets;
    this.errors = errors;
    if (nets.length === 0) {
      const why =
        errors.length > 0
          ? errors.map((e) => e.message).join('; ')
          : `no network config found in ${this.opts.confDir}`;
      this.lastLoad = `cni config load failed: ${why}: cni plugin not initialized: failed to load cni config`;
    } else if (errors.length > 0) {
      this.lastLoad = `cni config load failed: ${errors.map((e) => e.message).join('; ')}`;
    } else {
      this.lastLoad = 'OK';
    }
  }

  /** The files the last load() skipped, each error naming its file. */
  loadErrors(): CniConfigError[] {
    return [...this.errors];
  }

  /** containerd's NetworkReady condition. */
  status(): CniStatus {
    if (this.nets.length === 0) {
      return {
        ready: false,
        reason: 'NetworkPluginNotReady',
        message: 'Network plugin returns error: cni plugin not initialized',
        lastLoadStatus: this.lastLoad,
      };
    }
    return { ready: true, reason: '', message: '', lastLoadStatus: this.lastLoad };
  }

  networks(): { name: string; cniVersion: string; plugins: string[]; ifName: string; file: string }[] {
    return this.nets.map((n) => ({
      name: n.list.name,
      cniVersion: n.list.cniVersion,
      plugins: n.list.plugins.map((p) => p.type),
      ifName: n.ifName,
      file: n.list.file,
    }));
  }

  /**
   * ADD on every network. On failure whatever was added is DELeted again (the failing
   * network included) and the first error is thrown.
   */
  async setup(containerId: string, netnsPath: string, opts: SetupOptions = {}): Promise<NetworkAttachment[]> {
    validateContainerId(containerId);
    if (!netnsPath)
      throw new InvalidArgumentError(`cni setup of ${containerId}: network namespace path is empty`);
    if (this.nets.length === 0) throw new FailedPreconditionError('cni plugin not initialized');
    const nets = this.withLoopback(this.nets);
    const args = argPairs(opts.args);
    const capabilityArgs = capabilities(opts);
    const done: { net: Network; result: unknown; started: number }[] = [];
    try {
      for (const net of nets) {
        const rt = { containerId, netns: netnsPath, ifName: net.ifName, args, capabilityArgs };
        const progress = { result: undefined as unknown, started: 0 };
        try {
          const result = await this.addList(net.list, rt, progress);
          done.push({ net, result, started: net.list.plugins.length });
        } catch (e) {
          done.push({ net, result: progress.result, started: progress.started });
          throw e;
        }
      }
    } catch (e) {
      const cleanup: string[] = [];
      for (const { net, result, started } of done.reverse()) {
        if (started === 0) continue;
        const rt = { containerId, netns: netnsPath, ifName: net.ifName, args, capabilityArgs };
        try {
          // only the plugins that ran: a missing binary after them must not keep them from their DEL
          await this.delList({ ...net.list, plugins: net.list.plugins.slice(0, started) }, rt, result);
          await removeCache(this.opts.cacheDir, net.list.name, containerId, net.ifName);
        } catch (ce) {
          cleanup.push((ce as Error).message);
        }
      }
      if (cleanup.length > 0 && e instanceof Error)
        e.message += ` (undoing the setup also failed: ${cleanup.join('; ')})`;
      throw e;
    }
    return done.map(({ net, result }) => toAttachment(net.list.name, net.ifName, result));
  }

  /**
   * DEL on every network the container was attached to: each cached attachment with the
   * config, CNI_ARGS, capability arguments and result ADD had, then every loaded network
   * without a cache entry (with the config loaded now). A namespace that is gone is passed
   * as an empty CNI_NETNS, as libcni does. Removing twice is no error.
   */
  async remove(containerId: string, netnsPath: string, opts: SetupOptions = {}): Promise<void> {
    validateContainerId(containerId);
    const netns = (await netnsExists(netnsPath)) ? netnsPath : '';
    const cached = await readCacheEntries(this.opts.cacheDir, containerId);
    const seen = new Set(cached.map((c) => `${c.network}\0${c.ifName}`));
    const errors: Error[] = [];
    const tolerate = (e: unknown) => {
      const msg = (e as Error).message ?? '';
      // go-cni's rule: plugins answer "not found" for what is already gone, and without a
      // namespace some still try to open it
      return msg.includes('not found') || (netns === '' && msg.includes('no such file or directory'));
    };
    for (const c of cached) {
      try {
        await this.delCached(c, netns);
        await removeCache(this.opts.cacheDir, c.network, containerId, c.ifName);
      } catch (e) {
        if (tolerate(e)) await removeCache(this.opts.cacheDir, c.network, containerId, c.ifName);
        else errors.push(e as Error);
      }
    }
    const args = argPairs(opts.args);
    const capabilityArgs = capabilities(opts);
    for (const net of this.withLoopback(this.nets)) {
      if (seen.has(`${net.list.name}\0${net.ifName}`)) continue;
      try {
        await this.delList(
          net.list,
          { containerId, netns, ifName: net.ifName, args, capabilityArgs },
          undefined,
        );
      } catch (e) {
        if (!tolerate(e)) errors.push(e as Error);
      }
    }
    if (errors.length > 0) throw errors[0];
  }

  /** CHECK on every network, against the result cached at ADD. */
  async check(containerId: string, netnsPath: string, opts: SetupOptions = {}): Promise<void> {
    validateContainerId(containerId);
    if (this.nets.length === 0) throw new FailedPreconditionError('cni plugin not initialized');
    const cached = await readCacheEntries(this.opts.cacheDir, containerId);
    const args = argPairs(opts.args);
    const capabilityArgs = capabilities(opts);
    for (const net of this.withLoopback(this.nets)) {
      const { list } = net;
      if (compareVersions(list.cniVersion, '0.4.0') < 0)
        throw new FailedPreconditionError(
          `network "${list.name}": configuration version "${list.cniVersion}" does not support the CHECK command`,
        );
      if (list.disableCheck) continue;
      const entry = cached.find((c) => c.network === list.name && c.ifName === net.ifName);
      if (!entry)
        throw new NotFoundError(
          `network "${list.name}": no cached result for container ${containerId} (${net.ifName})`,
        );
      const rt = { containerId, netns: netnsPath, ifName: net.ifName, args, capabilityArgs };
      for (const p of list.plugins) {
        await this.run('CHECK', list, p, rt, entry.result);
      }
    }
  }

  private withLoopback(nets: Network[]): Network[] {
    return this.opts.loopback ? [...nets, { list: LOOPBACK, ifName: 'lo' }] : nets;
  }

  private async addList(
    list: NetworkConfigList,
    rt: RuntimeConf,
    progress: { result: unknown; started: number },
  ): Promise<unknown> {
    let result: unknown;
    for (const p of list.plugins) {
      result = await this.run('ADD', list, p, rt, result, () => {
        progress.started++;
      });
      if (result === undefined)
        throw new CniPluginError(list.name, p.type, 'ADD', undefined, 'plugin printed no result');
      progress.result = result;
    }
    await writeCache(this.opts.cacheDir, {
      network: list.name,
      containerId: rt.containerId,
      ifName: rt.ifName,
      config: list.bytes,
      cniArgs: rt.args,
      capabilityArgs: rt.capabilityArgs,
      result,
    });
    return result;
  }

  private async delList(list: NetworkConfigList, rt: RuntimeConf, prevResult: unknown): Promise<void> {
    // prevResult on DEL came with spec 0.4.0; older plugins get none
    const prev = compareVersions(list.cniVersion, '0.4.0') >= 0 ? prevResult : undefined;
    for (const p of [...list.plugins].reverse()) await this.run('DEL', list, p, rt, prev);
  }

  private async delCached(c: CacheEntry, netns: string): Promise<void> {
    let list: NetworkConfigList | undefined;
    try {
      list = parseConfList(
        c.config,
        `${this.opts.cacheDir}/results/${c.network}-${c.containerId}-${c.ifName}`,
      );
    } catch {
      // a cache entry without a usable config (libcni before 0.8 wrote none): the loaded one
      list = this.nets.find((n) => n.list.name === c.network)?.list;
      if (!list && c.network === LOOPBACK.name) list = LOOPBACK;
    }
    if (!list) throw new NotFoundError(`network "${c.network}": no config in cache and none loaded`);
    await this.delList(
      list,
      {
        containerId: c.containerId,
        netns,
        ifName: c.ifName,
        args: c.cniArgs,
        capabilityArgs: c.capabilityArgs,
      },
      c.result,
    );
  }

  private async run(
    command: CniCommand,
    list: NetworkConfigList,
    plugin: NetworkConfigList['plugins'][number],
    rt: RuntimeConf,
    prevResult: unknown,
    onStart?: () => void,
  ): Promise<unknown> {
    const path = await findPlugin(plugin.type, this.opts.binDirs, list.name);
    onStart?.();
    return execPlugin(path, {
      command,
      containerId: rt.containerId,
      netns: rt.netns,
      ifName: rt.ifName,
      args: rt.args,
      binDirs: this.opts.binDirs,
      network: list.name,
      plugin: plugin.type,
      config: buildConfig(list, plugin, rt, prevResult),
      timeoutMs: this.timeoutMs,
    });
  }
}

// libcni's buildOneConfig + injectRuntimeConfig
function buildConfig(
  list: NetworkConfigList,
  plugin: Record<string, unknown>,
  rt: RuntimeConf,
  prevResult: unknown,
): Buffer {
  const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  if (prevResult !== undefined) conf.prevResult = prevResult;
  const caps = plugin.capabilities;
  const rc: Record<string, unknown> = {};
  if (caps && typeof caps === 'object') {
    for (const [cap, on] of Object.entries(caps)) {
      if (on === true && cap in rt.capabilityArgs) rc[cap] = rt.capabilityArgs[cap];
    }
  }
  if (Object.keys(rc).length > 0) conf.runtimeConfig = rc;
  return Buffer.from(JSON.stringify(conf));
}

function validateContainerId(id: string): void {
  if (typeof id !== 'string' || !NAME_RE.test(id))
    throw new InvalidArgumentError(`invalid container id "${id}": must match ${NAME_RE.source}`);
}

function argPairs(args: Record<string, string> | undefined): [string, string][] {
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(args ?? {})) {
    if (k === '' || k.includes('=') || k.includes(';') || String(v).includes(';'))
      throw new InvalidArgumentError(
        `invalid CNI_ARGS entry "${k}=${v}": keys and values may not hold ';' (nor '=' in keys)`,
      );
    out.push([k, String(v)]);
  }
  return out;
}

function capabilities(opts: SetupOptions): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(opts.capabilityArgs ?? {}) };
  if (opts.portMappings && opts.portMappings.length > 0) {
    out.portMappings = opts.portMappings.map((p) => {
      if (!Number.isInteger(p.hostPort) || p.hostPort < 1 || p.hostPort > 65535)
        throw new InvalidArgumentError(`invalid port mapping: hostPort ${p.hostPort} out of range`);
      if (!Number.isInteger(p.containerPort) || p.containerPort < 1 || p.containerPort > 65535)
        throw new InvalidArgumentError(`invalid port mapping: containerPort ${p.containerPort} out of range`);
      const protocol = String(p.protocol ?? 'tcp').toLowerCase();
      if (!['tcp', 'udp', 'sctp'].includes(protocol))
        throw new InvalidArgumentError(`invalid port mapping: protocol "${p.protocol}"`);
      const m: Record<string, unknown> = { hostPort: p.hostPort, containerPort: p.containerPort, protocol };
      if (p.hostIP) m.hostIP = p.hostIP;
      return m;
    });
  }
  if (opts.bandwidth && Object.keys(opts.bandwidth).length > 0) out.bandwidth = { ...opts.bandwidth };
  return out;
}
