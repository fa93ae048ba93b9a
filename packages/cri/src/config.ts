import { InvalidArgumentError } from '@berth/api';

/**
 * `[plugins."io.containerd.grpc.v1.cri"]` of a version 2 config.toml, in containerd 1.6's
 * words. The daemon merges the file's table over these defaults and warns about every key
 * not listed here; keys listed here that berth accepts without acting on them are named in
 * UNUSED_KEYS, so the plugin warns about those too instead of dropping them silently.
 */
export interface CriPluginConfig {
  sandbox_image: string;
  stream_server_address: string;
  stream_server_port: string;
  stream_idle_timeout: string;
  enable_selinux: boolean;
  selinux_category_range: number;
  max_container_log_line_size: number;
  netns_mounts_under_state_dir: boolean;
  restrict_oom_score_adj: boolean;
  disable_cgroup: boolean;
  disable_apparmor: boolean;
  disable_proc_mount: boolean;
  disable_hugetlb_controller: boolean;
  tolerate_missing_hugetlb_controller: boolean;
  ignore_image_defined_volumes: boolean;
  enable_unprivileged_ports: boolean;
  enable_unprivileged_icmp: boolean;
  enable_tls_streaming: boolean;
  systemd_cgroup: boolean;
  stats_collect_period: number;
  device_ownership_from_security_context: boolean;
  image_pull_progress_timeout: string;
  containerd: {
    snapshotter: string;
    default_runtime_name: string;
    no_pivot: boolean;
    disable_snapshot_annotations: boolean;
    discard_unpacked_layers: boolean;
    /** `<name>`: { runtime_type, runtime_path?, pod_annotations?, options? } (a free-form map). */
    runtimes: Record<string, Record<string, unknown>>;
  };
  cni: {
    bin_dir: string;
    conf_dir: string;
    max_conf_num: number;
    conf_template: string;
    ip_pref: string;
  };
  registry: {
    config_path: string;
  };
}

/** berth's own shim, the runtime of a handler nothing configures. */
export const BERTH_RUNTIME_TYPE = 'io.containerd.berth.v1';
export const RUNC_RUNTIME_TYPE = 'io.containerd.runc.v2';

export function defaultCriPluginConfig(): CriPluginConfig {
  return {
    sandbox_image: 'registry.k8s.io/pause:3.6',
    stream_server_address: '127.0.0.1',
    stream_server_port: '0',
    stream_idle_timeout: '4h0m0s',
    enable_selinux: false,
    selinux_category_range: 1024,
    max_container_log_line_size: 16384,
    netns_mounts_under_state_dir: false,
    restrict_oom_score_adj: false,
    disable_cgroup: false,
    disable_apparmor: false,
    disable_proc_mount: false,
    disable_hugetlb_controller: true,
    tolerate_missing_hugetlb_controller: true,
    ignore_image_defined_volumes: false,
    enable_unprivileged_ports: false,
    enable_unprivileged_icmp: false,
    enable_tls_streaming: false,
    systemd_cgroup: false,
    stats_collect_period: 10,
    device_ownership_from_security_context: false,
    image_pull_progress_timeout: '1m0s',
    containerd: {
      snapshotter: 'overlayfs',
      default_runtime_name: 'berth',
      no_pivot: false,
      disable_snapshot_annotations: true,
      discard_unpacked_layers: false,
      runtimes: {},
    },
    cni: {
      bin_dir: '/opt/cni/bin',
      conf_dir: '/etc/cni/net.d',
      max_conf_num: 1,
      conf_template: '',
      ip_pref: '',
    },
    registry: { config_path: '' },
  };
}

/** containerd keys berth reads but does not act on (yet): set to anything but the default, they are a warning. */
const UNUSED_KEYS = [
  'stream_idle_timeout',
  'selinux_category_range',
  'disable_apparmor',
  'disable_proc_mount',
  'disable_hugetlb_controller',
  'tolerate_missing_hugetlb_controller',
  'ignore_image_defined_volumes',
  'enable_unprivileged_ports',
  'enable_unprivileged_icmp',
  'enable_tls_streaming',
  'systemd_cgroup',
  'stats_collect_period',
  'device_ownership_from_security_context',
  'image_pull_progress_timeout',
  'containerd.no_pivot',
  'containerd.disable_snapshot_annotations',
  'containerd.discard_unpacked_layers',
  'cni.conf_template',
  'cni.ip_pref',
] as const;

/**
 * runc's options (containerd.runc.v1.Options) in the Go field names config.toml spells them
 * in, with the message's field each sets; berth's shim reads the same message.
 */
export const RUNC_OPTION_FIELDS: Readonly<Record<string, string>> = {
  NoPivotRoot: 'noPivotRoot',
  NoNewKeyring: 'noNewKeyring',
  ShimCgroup: 'shimCgroup',
  IoUid: 'ioUid',
  IoGid: 'ioGid',
  BinaryName: 'binaryName',
  Root: 'root',
  CriuPath: 'criuPath',
  SystemdCgroup: 'systemdCgroup',
  CriuImagePath: 'criuImagePath',
  CriuWorkPath: 'criuWorkPath',
};

/** One runtime handler: what RunPodSandbox's runtime_handler names. */
export interface RuntimeHandler {
  name: string;
  /** The containerd runtime (shim) type: io.containerd.runc.v2, io.containerd.berth.v1... */
  type: string;
  /** runtime_path: the shim binary, when not found by type. */
  path: string;
  /** Annotations of the pod passed on to its containers' specs (prefix match, `*` for all). */
  podAnnotations: string[];
  /** `options`, as written (for runc.v2: SystemdCgroup, BinaryName, Root...). */
  options: Record<string, unknown>;
}

/** The plugin's configuration, checked and in berth's words. */
export interface CriConfig {
  sandboxImage: string;
  streamServerAddress: string;
  streamServerPort: number;
  enableSelinux: boolean;
  maxContainerLogLineSize: number;
  netnsMountsUnderStateDir: boolean;
  restrictOomScoreAdj: boolean;
  disableCgroup: boolean;
  snapshotter: string;
  defaultRuntimeName: string;
  runtimes: Map<string, RuntimeHandler>;
  cni: { binDirs: string[]; confDir: string; maxConfNum: number };
  registryConfigPath: string;
}

const KEY = 'plugins."io.containerd.grpc.v1.cri"';

function bad(key: string, value: unknown, why: string): InvalidArgumentError {
  return new InvalidArgumentError(`invalid config: ${KEY}.${key} = ${JSON.stringify(value)}: ${why}`);
}

function getPath(c: unknown, dotted: string): unknown {
  let v: unknown = c;
  for (const k of dotted.split('.')) v = (v as Record<string, unknown> | undefined)?.[k];
  return v;
}

function stringList(key: string, v: unknown): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
    throw bad(key, v, 'expected an array of strings');
  return v as string[];
}

/**
 * Checks the merged table and turns it into a CriConfig; `warn` hears of every key berth
 * accepts without acting on it. InvalidArgument names the key and the value.
 */
export function resolveCriConfig(raw: CriPluginConfig, warn: (msg: string) => void = () => {}): CriConfig {
  const defaults = defaultCriPluginConfig();
  for (const key of UNUSED_KEYS) {
    const v = getPath(raw, key);
    if (JSON.stringify(v) !== JSON.stringify(getPath(defaults, key)))
      warn(`config key ${KEY}.${key} = ${JSON.stringify(v)} is not used by berth, ignored`);
  }
  const port = Number(raw.stream_server_port);
  if (!/^\d+$/.test(String(raw.stream_server_port)) || port > 65535)
    throw bad('stream_server_port', raw.stream_server_port, 'expected a port number (0 picks a free one)');
  if (!Number.isInteger(raw.max_container_log_line_size))
    throw bad('max_container_log_line_size', raw.max_container_log_line_size, 'expected an integer');
  if (!Number.isInteger(raw.cni.max_conf_num))
    throw bad('cni.max_conf_num', raw.cni.max_conf_num, 'expected an integer');
  if (raw.sandbox_image === '') throw bad('sandbox_image', raw.sandbox_image, 'must not be empty');
  if (raw.enable_selinux)
    warn(`config key ${KEY}.enable_selinux = true: SELinux is not supported by berth, ignored`);

  const runtimes = new Map<string, RuntimeHandler>();
  // Handlers a bare config still offers: berth's shim and runc's, under their usual names.
  runtimes.set('berth', {
    name: 'berth',
    type: BERTH_RUNTIME_TYPE,
    path: '',
    podAnnotations: [],
    options: {},
  });
  runtimes.set('runc', { name: 'runc', type: RUNC_RUNTIME_TYPE, path: '', podAnnotations: [], options: {} });
  for (const [name, table] of Object.entries(raw.containerd.runtimes ?? {})) {
    const at = `containerd.runtimes.${name}`;
    if (typeof table !== 'object' || table === null || Array.isArray(table))
      throw bad(at, table, 'expected a table');
    const { runtime_type, runtime_path, pod_annotations, options, ...rest } = table as Record<
      string,
      unknown
    >;
    if (typeof runtime_type !== 'string' || !/^io\.containerd\.[a-z0-9_-]+\.v\d+$/.test(runtime_type))
      throw bad(`${at}.runtime_type`, runtime_type, 'expected a runtime type such as io.containerd.runc.v2');
    if (runtime_path !== undefined && typeof runtime_path !== 'string')
      throw bad(`${at}.runtime_path`, runtime_path, 'expected a string');
    if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options)))
      throw bad(`${at}.options`, options, 'expected a table');
    for (const k of Object.keys(rest)) warn(`config key ${KEY}.${at}.${k} is not used by berth, ignored`);
    for (const k of Object.keys((options as Record<string, unknown> | undefined) ?? {}))
      if (!Object.hasOwn(RUNC_OPTION_FIELDS, k))
        warn(
          `config key ${KEY}.${at}.options.${k} is not a runc option (${Object.keys(RUNC_OPTION_FIELDS).join(', ')}), ignored`,
        );
    runtimes.set(name, {
      name,
      type: runtime_type,
      path: (runtime_path as string | undefined) ?? '',
      podAnnotations: stringList(`${at}.pod_annotations`, pod_annotations),
      options: (options as Record<string, unknown> | undefined) ?? {},
    });
  }
  const defaultRuntimeName = raw.containerd.default_runtime_name;
  if (!runtimes.has(defaultRuntimeName))
    throw bad(
      'containerd.default_runtime_name',
      defaultRuntimeName,
      `no runtime of that name (configured: ${[...runtimes.keys()].join(', ')})`,
    );
  if (raw.containerd.snapshotter === '') throw bad('containerd.snapshotter', '', 'must not be empty');

  return {
    sandboxImage: raw.sandbox_image,
    streamServerAddress: raw.stream_server_address,
    streamServerPort: port,
    enableSelinux: raw.enable_selinux,
    maxContainerLogLineSize: raw.max_container_log_line_size,
    netnsMountsUnderStateDir: raw.netns_mounts_under_state_dir,
    restrictOomScoreAdj: raw.restrict_oom_score_adj,
    disableCgroup: raw.disable_cgroup,
    snapshotter: raw.containerd.snapshotter,
    defaultRuntimeName,
    runtimes,
    cni: {
      // containerd 1.6 takes one directory; a list (containerd 2's bin_dirs) is accepted too.
      binDirs: Array.isArray(raw.cni.bin_dir)
        ? stringList('cni.bin_dir', raw.cni.bin_dir)
        : [raw.cni.bin_dir],
      confDir: raw.cni.conf_dir,
      maxConfNum: raw.cni.max_conf_num,
    },
    registryConfigPath: raw.registry.config_path,
  };
}

/**
 * The pod annotations a runtime's `pod_annotations` pass on into its pod's and containers'
 * specs: each pattern matched against the whole key as containerd does (Go's filepath.Match:
 * `*` and `?` within a key, `[...]` classes).
 */
export function passedPodAnnotations(
  handler: RuntimeHandler | undefined,
  annotations: Readonly<Record<string, string>> | undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (!handler || handler.podAnnotations.length === 0 || !annotations) return out;
  const patterns = handler.podAnnotations.map(
    (p) =>
      new RegExp(
        `^${p
          .replace(/[.+^${}()|\\]/g, '\\$&')
          .replaceAll('*', '[^/]*')
          .replaceAll('?', '[^/]')}$`,
      ),
  );
  for (const [k, v] of Object.entries(annotations)) if (patterns.some((re) => re.test(k))) out[k] = v;
  return out;
}
