/**
 * A CRI end-to-end fixture: berthd (or Debian's containerd, for a side-by-side check) with the
 * CRI configured the way the e2e tests need it — a pause image and test images pushed to a
 * loopback registry reached over plain HTTP, an optional CNI bridge network of this run's own —
 * crictl bound to its socket, and a cleanup that leaves nothing on the host whatever a failed
 * test left behind: pods, shims, mounts, the bridge and its DNAT chains, a cgroup parent, the
 * registry and the files.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitUntil } from './crash';
import { type CrictlResult, crictl, crictlEndpoint } from './crictl';
import { type Daemon, startBerthd, startContainerd } from './daemons';
import { type BuildImageOptions, type BuiltImage, buildImage } from './images';
import { makeTempDir, removeDir, run } from './processes';
import { pushToRegistry } from './push';
import { type Registry, startRegistry, writePlainHttpHosts } from './registry';

type TomlValue = string | number | boolean;

export interface CriDaemonOptions {
  /** Names the temporary directory and the CNI network (`berth-<name>-<pid>`). */
  name: string;
  /** Which daemon: berthd (the default), or Debian's containerd as the reference. */
  daemon?: 'berthd' | 'containerd';
  /** More keys of the `[plugins."io.containerd.grpc.v1.cri"]` table, e.g. `{ stream_server_port: '0' }`. */
  criConfig?: Record<string, TomlValue>;
  /** A runtime handler (`containerd.runtimes.<name>`); `options` is given the fixture's directory. */
  handler?: { name: string; runtimeType?: string; options?: (dir: string) => Record<string, TomlValue> };
  /** TOML text appended to the config (tables of its own). */
  extraConfig?: string;
  /**
   * A bridge network (host-local IPAM on a /24 no route of this host uses, default route,
   * hairpin), with the portmap plugin for hostPorts when asked; without it the CNI conf dir is
   * empty and pods run on the host network.
   */
  network?: { portmap?: boolean };
  /** A registry the caller owns (and stops); otherwise the fixture starts one. */
  registry?: Registry;
  /** More registry hosts for which hosts.toml says plain HTTP. */
  plainHttp?: string[];
  /** Images pushed to the registry, by `repo:tag`; `image(name)` gives their references. */
  images?: Record<string, BuiltImage | BuildImageOptions>;
  /** Of those, the ones crictl pulls once the daemon runs. */
  pull?: string[];
}

export interface CriNetwork {
  /** The CNI network's name; host-local keeps its addresses under `<ipamDir>/<name>`. */
  readonly name: string;
  readonly bridge: string;
  /** The /24's first three octets, e.g. `10.97.31`; the gateway is `<subnet>.1`. */
  readonly subnet: string;
  readonly conflist: string;
  readonly ipamDir: string;
  /** The addresses host-local holds for this network. */
  leases(): string[];
  /** `ip -o link show master <bridge>`: the pods' veths, one line each. */
  veths(): Promise<string[]>;
  /** The nat table's rules (iptables -S) that name `--dport <port>`. */
  dnat(port: number): Promise<string[]>;
}

export interface CriDaemon {
  /** The daemon now running; `restart()` replaces it. */
  readonly berthd: Daemon;
  readonly registry: Registry;
  /** Everything of the fixture is below it (the daemon's root, state and socket in `<dir>/daemon`). */
  readonly dir: string;
  readonly config: string;
  readonly configPath: string;
  /** A cgroup parent of this run's own, removed from every hierarchy by `stop()`. */
  readonly cgroupParent: string;
  readonly net?: CriNetwork;
  /** The endpoint flags for a crictl the test spawns itself (attach, port-forward, -it). */
  readonly endpoint: string[];
  /** `<registry host>/<name>` for a pushed image. */
  image(name: string): string;
  crictl(...args: string[]): Promise<CrictlResult>;
  crictlWithInput(input: string, ...args: string[]): Promise<CrictlResult>;
  /** crictl's trimmed stdout; throws with its stderr and the daemon's last logs when it fails. */
  ok(...args: string[]): Promise<string>;
  /** `ok(cmd, '-o', 'json', ...args)`, parsed. */
  json(cmd: string, ...args: string[]): Promise<any>;
  /** `<dir>/logs/<name>`, made (as the kubelet makes a pod's log directory before it runs the pod). */
  logDir(name: string): string;
  /** Writes `value` as JSON to a new file in `dir` named after `name`; its path. */
  writeJson(name: string, value: unknown): string;
  /** Polls `check` every 100 ms; throws naming `what`, `detail()` and the daemon's last logs after `timeoutMs`. */
  until(
    what: string,
    check: () => boolean | Promise<boolean>,
    timeoutMs?: number,
    detail?: () => string,
  ): Promise<void>;
  /** Mount points below `dir`, from /proc/self/mountinfo. */
  mounts(): string[];
  /** Shims this daemon started (their argv names its socket), whichever daemon instance. */
  shimPids(): number[];
  /** Starts the daemon again on the same root, state, socket and config (stopping it first if it runs). */
  restart(): Promise<Daemon>;
  /** Removes everything: pods, shims, the daemon, the registry if its own, mounts, network, cgroups, files. */
  stop(): Promise<void>;
}

// jest's hooks, as the test file that calls useCriDaemon sees them
declare function beforeAll(fn: () => Promise<void>, timeoutMs?: number): void;
declare function afterAll(fn: () => Promise<void>, timeoutMs?: number): void;

/**
 * startCriDaemon in the calling test file's (or describe block's) beforeAll and its stop() in
 * afterAll; the CriDaemon it returns stands for the one started (using it before beforeAll ran throws).
 */
export function useCriDaemon(opts: CriDaemonOptions, timeoutMs = 180_000): CriDaemon {
  let cri: CriDaemon | undefined;
  beforeAll(async () => {
    cri = await startCriDaemon(opts);
  }, timeoutMs);
  afterAll(async () => {
    await cri?.stop();
  }, 120_000);
  return new Proxy({} as CriDaemon, {
    get: (_, key) => {
      if (!cri) throw new Error(`the CRI daemon of ${opts.name} is not running (it starts in beforeAll)`);
      return Reflect.get(cri, key);
    },
  });
}

/** Calls `fn` until it resolves without throwing and gives its value; after `timeoutMs`, its last error. */
export async function retry<T>(fn: () => T | Promise<T>, timeoutMs = 15_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }
}

/** Mount points below `dir`, deepest last as mountinfo lists them. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m?.startsWith(`${dir}/`) === true);
}

/** Processes named containerd-shim-* whose `-address` is `address`, whatever other daemons run. */
export function shimPidsOf(address: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const shim = argv.slice(0, 2).some((a) => /(^|\/)containerd-shim-[^/]+$/.test(a));
      const at = argv.indexOf('-address');
      if (shim && at !== -1 && argv[at + 1] === address) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

let bridges = 0;

/** A /24 in 10.96.0.0/14 that no route of this host names (other runs' bridges have one). */
async function freeSubnet(): Promise<string> {
  const routes = (await run('ip', ['-4', 'route'])).stdout;
  for (;;) {
    const s = `10.${96 + Math.floor(Math.random() * 4)}.${1 + Math.floor(Math.random() * 254)}`;
    if (!routes.includes(`${s}.`)) return s;
  }
}

const toml = (v: TomlValue): string => (typeof v === 'string' ? JSON.stringify(v) : String(v));

/** Starts a daemon with the CRI configured for an e2e test; see CriDaemonOptions. */
export async function startCriDaemon(opts: CriDaemonOptions): Promise<CriDaemon> {
  const dir = makeTempDir(`berth-cri-${opts.name}-`);
  const daemonDir = join(dir, 'daemon');
  const netd = join(dir, 'net.d');
  const hostsDir = join(dir, 'certs.d');
  const cgroupParent = `/berth-${opts.name}-e2e-${process.pid}-${++bridges}`;
  let registry: Registry | undefined = opts.registry;
  let berthd: Daemon | undefined;
  let net: CriNetwork | undefined;
  let ipForward = '';
  let config = '';

  const start = (config: string) =>
    opts.daemon === 'containerd'
      ? startContainerd({ dir: daemonDir, config })
      : startBerthd({ dir: daemonDir, config });
  const call = (args: string[], input?: string) => crictl(berthd!.address, args, '60s', input);
  const ok = async (...args: string[]): Promise<string> => {
    const r = await call(args);
    if (r.code !== 0)
      throw new Error(
        `crictl ${args.join(' ')}: exit ${r.code}\n${r.stderr}\n${berthd!.logs().slice(-3000)}`,
      );
    return r.stdout.trim();
  };
  let files = 0;

  const running = (d: Daemon) => d.child.exitCode === null && d.child.signalCode === null;
  const stop = async (): Promise<void> => {
    // A test that killed the daemon and failed before restarting it left pods whose processes
    // outlive their shims: the daemon, back on its root, removes them as it removes any pod.
    if (berthd && config && !running(berthd)) berthd = await start(config).catch(() => berthd);
    if (berthd && running(berthd)) {
      await call(['rm', '--all', '--force']).catch(() => {});
      await call(['rmp', '--all', '--force']).catch(() => {});
    }
    if (berthd) {
      // whatever a failed test left running, also under a daemon killed and not restarted
      for (const pid of shimPidsOf(berthd.address)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await berthd.stop();
    }
    if (registry && registry !== opts.registry) await registry.stop();
    for (const mp of mountsUnder(dir).sort((a, b) => b.length - a.length))
      await run('umount', ['-l', mp]).catch(() => {});
    if (net) {
      await run('ip', ['link', 'del', net.bridge]).catch(() => {});
      await removeDnatChains(net.subnet);
      if (ipForward) {
        try {
          writeFileSync('/proc/sys/net/ipv4/ip_forward', ipForward);
        } catch {
          // not ours to set here
        }
      }
    }
    for (const h of existsSync('/sys/fs/cgroup') ? readdirSync('/sys/fs/cgroup') : []) {
      for (const d of [join('/sys/fs/cgroup', h, cgroupParent), join('/sys/fs/cgroup', cgroupParent)]) {
        if (!existsSync(d)) continue;
        // what the daemon could not remove: the cgroup parent is this fixture's, so are its processes
        const procs = (await run('find', [d, '-name', 'cgroup.procs', '-exec', 'cat', '{}', '+'])).stdout;
        for (const pid of new Set(procs.split('\n').filter(Boolean))) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            // gone
          }
        }
        await waitUntil('the cgroup to empty', () => cgroupEmpty(d), 5000).catch(() => {});
        await run('find', [d, '-depth', '-type', 'd', '-delete']).catch(() => {});
      }
    }
    removeDir(dir);
  };

  try {
    mkdirSync(netd, { recursive: true });
    mkdirSync(daemonDir, { recursive: true });
    if (opts.network) {
      ipForward = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
      const name = `berth-${opts.name}-${process.pid}`;
      const bridge = `bc${process.pid % 100000}n${++bridges}`;
      const subnet = await freeSubnet();
      const ipamDir = join(dir, 'ipam');
      const conflist = join(netd, '10-e2e.conflist');
      const plugins: object[] = [
        {
          type: 'bridge',
          bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            dataDir: ipamDir,
            ranges: [[{ subnet: `${subnet}.0/24` }]],
            routes: [{ dst: '0.0.0.0/0' }],
          },
        },
      ];
      if (opts.network.portmap) plugins.push({ type: 'portmap', capabilities: { portMappings: true } });
      writeFileSync(conflist, JSON.stringify({ cniVersion: '1.0.0', name, plugins }));
      net = {
        name,
        bridge,
        subnet,
        conflist,
        ipamDir,
        leases: () => {
          const d = join(ipamDir, name);
          return existsSync(d) ? readdirSync(d).filter((f) => f.startsWith(`${subnet}.`)) : [];
        },
        veths: async () =>
          (await run('ip', ['-o', 'link', 'show', 'master', bridge])).stdout.split('\n').filter(Boolean),
        dnat: async (port) =>
          (await run('iptables', ['-w', '-t', 'nat', '-S'])).stdout
            .split('\n')
            .filter((l) => l.includes(`--dport ${port}`)),
      };
    }
    registry ??= await startRegistry();
    const pause = buildImage({ layers: ['busybox'], config: { Entrypoint: ['/bin/sleep', '2147483647'] } });
    const images: Record<string, BuiltImage | BuildImageOptions> = { 'e2e/pause:3.6': pause, ...opts.images };
    for (const [ref, image] of Object.entries(images)) {
      const at = ref.lastIndexOf(':');
      const built = 'blobs' in image ? image : buildImage(image);
      await pushToRegistry(registry.url, ref.slice(0, at), ref.slice(at + 1), built);
    }
    for (const host of [registry.host, ...(opts.plainHttp ?? [])]) writePlainHttpHosts(hostsDir, host);

    const cri = 'plugins."io.containerd.grpc.v1.cri"';
    const lines = [
      'version = 2',
      // containerd's opt plugin would install into /opt/containerd otherwise (berthd has none)
      ...(opts.daemon === 'containerd'
        ? ['[plugins."io.containerd.internal.v1.opt"]', `  path = ${toml(join(dir, 'opt'))}`]
        : []),
      `[${cri}]`,
      `  sandbox_image = ${toml(`${registry.host}/e2e/pause:3.6`)}`,
      // netns pins under the state dir, where the cleanup finds them
      '  netns_mounts_under_state_dir = true',
      // this host may withhold CAP_SYS_RESOURCE: the pause's -998 is then raised to the daemon's own score
      '  restrict_oom_score_adj = true',
      ...Object.entries(opts.criConfig ?? {}).map(([k, v]) => `  ${k} = ${toml(v)}`),
    ];
    if (opts.handler) {
      const h = opts.handler;
      lines.push(
        `[${cri}.containerd.runtimes.${h.name}]`,
        `  runtime_type = ${toml(h.runtimeType ?? 'io.containerd.runc.v2')}`,
      );
      const options = Object.entries(h.options?.(dir) ?? {});
      if (options.length > 0)
        lines.push(
          `[${cri}.containerd.runtimes.${h.name}.options]`,
          ...options.map(([k, v]) => `  ${k} = ${toml(v)}`),
        );
    }
    lines.push(
      `[${cri}.cni]`,
      '  bin_dir = "/usr/lib/cni"',
      `  conf_dir = ${toml(netd)}`,
      `[${cri}.registry]`,
      `  config_path = ${toml(hostsDir)}`,
      opts.extraConfig ?? '',
    );
    config = `${lines.join('\n')}\n`;
    berthd = await start(config);
    for (const name of opts.pull ?? []) await ok('pull', `${registry.host}/${name}`);

    const reg = registry;
    return {
      get berthd() {
        return berthd!;
      },
      registry: reg,
      dir,
      config,
      configPath: join(daemonDir, 'config.toml'),
      cgroupParent,
      net,
      get endpoint() {
        return crictlEndpoint(berthd!.address);
      },
      image: (name) => `${reg.host}/${name}`,
      crictl: (...args) => call(args),
      crictlWithInput: (input, ...args) => call(args, input),
      ok,
      json: async (cmd, ...args) => JSON.parse(await ok(cmd, '-o', 'json', ...args)),
      logDir: (name) => {
        const d = join(dir, 'logs', name);
        mkdirSync(d, { recursive: true });
        return d;
      },
      writeJson: (name, value) => {
        const path = join(dir, `${name}-${++files}.json`);
        writeFileSync(path, JSON.stringify(value));
        return path;
      },
      until: (what, check, timeoutMs = 30_000, detail) =>
        waitUntil(what, check, timeoutMs, {
          everyMs: 100,
          detail: () => `${detail?.() ?? ''}\n${berthd!.logs().slice(-3000)}`,
        }),
      mounts: () => mountsUnder(dir),
      shimPids: () => shimPidsOf(berthd!.address),
      restart: async () => {
        await berthd!.stop();
        berthd = await start(config);
        return berthd;
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Whether no process is left in a cgroup directory or below it. */
async function cgroupEmpty(dir: string): Promise<boolean> {
  const r = await run('find', [dir, '-name', 'cgroup.procs', '-exec', 'cat', '{}', '+']);
  return r.stdout.trim() === '';
}

/** Removes the portmap plugin's per-pod DNAT chains (CNI-DN-*) for `subnet` (`10.1.2`) that a failed test left, and the jumps to them. */
export async function removeDnatChains(subnet: string): Promise<void> {
  const rules = (await run('iptables', ['-w', '-t', 'nat', '-S']).catch(() => ({ stdout: '' }))).stdout;
  const chains = new Set<string>();
  for (const line of rules.split('\n')) {
    const m = /^-A (CNI-DN-[0-9a-f]+) .*/.exec(line);
    if (m && line.includes(`${subnet}.`)) chains.add(m[1]!);
  }
  if (chains.size === 0) return;
  for (const parent of ['CNI-HOSTPORT-DNAT', 'CNI-HOSTPORT-SETMARK', 'CNI-HOSTPORT-MASQ']) {
    const list = (
      await run('iptables', ['-w', '-t', 'nat', '-L', parent, '-n', '--line-numbers']).catch(() => ({
        stdout: '',
      }))
    ).stdout;
    const nums = list
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => chains.has(f[1]!))
      .map((f) => Number(f[0]))
      .sort((a, b) => b - a);
    for (const n of nums) await run('iptables', ['-w', '-t', 'nat', '-D', parent, String(n)]).catch(() => {});
  }
  for (const c of chains) {
    await run('iptables', ['-w', '-t', 'nat', '-F', c]).catch(() => {});
    await run('iptables', ['-w', '-t', 'nat', '-X', c]).catch(() => {});
  }
}
