/**
 * A container made from an image as `ctr run` makes it (containerd's client.NewContainer with
 * WithNewSnapshot and WithNewSpec): the image unpacked into the snapshotter when it is not
 * yet, a writable snapshot named after the container on the image's layers, and the spec
 * built from containerd's defaults, the image config and the flags, users resolved in the
 * container's own /etc/passwd and /etc/group.
 */
import { resolve } from 'node:path';
import type { Container, Context, Descriptor, Mount } from '@berth/api';
import type { Client, oci } from '@berth/client';
import type { FlagSpec, FlagValues } from './args';
import { readBlob, resolveManifest } from './image-content';
import { api, type Globals, labelArgs } from './runtime';

type ClientModule = typeof import('@berth/client');
const clientModule = (): ClientModule => require('@berth/client') as ClientModule;

export const DEFAULT_RUNTIME = 'io.containerd.berth.v1';
export const DEFAULT_SNAPSHOTTER = 'overlayfs';
const STOP_SIGNAL_LABEL = 'io.containerd.image.config.stop-signal';

/** The flags that shape a new container (ctr's ContainerFlags and SnapshotterFlags, the common ones). */
export const CONTAINER_FLAGS: readonly FlagSpec[] = [
  {
    name: 'snapshotter',
    type: 'string',
    value: 'NAME',
    default: DEFAULT_SNAPSHOTTER,
    env: ['CONTAINERD_SNAPSHOTTER'],
    description: 'snapshotter for the container (the image is unpacked into it when it is not yet)',
  },
  {
    name: 'snapshotter-label',
    type: 'string',
    repeatable: true,
    value: 'K=V',
    description: 'labels for the new snapshot',
  },
  { name: 'runtime', type: 'string', value: 'NAME', default: DEFAULT_RUNTIME, description: 'runtime name' },
  {
    name: 'label',
    type: 'string',
    repeatable: true,
    value: 'K=V',
    description: 'labels for the container (also set as spec annotations)',
  },
  { name: 'env', type: 'string', repeatable: true, value: 'K=V', description: 'environment variables' },
  { name: 'cwd', type: 'string', value: 'DIR', description: 'working directory of the process' },
  {
    name: 'user',
    short: 'u',
    type: 'string',
    value: 'USER[:GROUP]',
    description: 'user (name or id) to run as',
  },
  {
    name: 'mount',
    type: 'string',
    repeatable: true,
    value: 'SPEC',
    description: "mounts, ctr's syntax (type=bind,src=/a,dst=/b,options=rbind:ro)",
  },
  { name: 'tty', short: 't', type: 'bool', description: 'allocate a terminal' },
  { name: 'read-only', type: 'bool', description: 'mount the root filesystem read-only' },
  { name: 'net-host', type: 'bool', description: "use the host's network namespace" },
  { name: 'privileged', type: 'bool', description: 'run privileged' },
  { name: 'hostname', type: 'string', value: 'NAME', description: 'hostname of the container' },
  {
    name: 'cap-add',
    type: 'string',
    repeatable: true,
    value: 'CAP',
    description: 'add a capability (CAP_ prefix)',
  },
  {
    name: 'cap-drop',
    type: 'string',
    repeatable: true,
    value: 'CAP',
    description: 'drop a capability (CAP_ prefix)',
  },
  {
    name: 'cgroup',
    type: 'string',
    value: 'PATH',
    description: 'cgroup path (default /<namespace>/<id>; "" lets the runtime choose)',
  },
  { name: 'memory-limit', type: 'int', value: 'BYTES', description: 'memory limit in bytes' },
  { name: 'cpu-shares', type: 'int', value: 'N', default: 1024, description: 'cpu shares' },
  {
    name: 'rootfs',
    type: 'bool',
    description: 'use the image argument as a root filesystem directory, not an image',
  },
];

const strings = (v: unknown): string[] => (Array.isArray(v) ? (v as string[]) : []);

function checkCaps(caps: string[]): string[] {
  for (const c of caps) {
    if (!c.startsWith('CAP_'))
      throw new (api().InvalidArgumentError)("capabilities must be specified with 'CAP_' prefix");
  }
  return caps;
}

/** The spec options of the flags (the image config apart), in ctr run's terms. */
export function runSpecOptions(flags: FlagValues, args: string[], cgroupGiven: boolean): oci.RunSpecOptions {
  const opts: oci.RunSpecOptions = {
    args,
    env: strings(flags.env),
    mounts: strings(flags.mount),
    tty: flags.tty === true,
    readonly: flags['read-only'] === true,
    netHost: flags['net-host'] === true,
    privileged: flags.privileged === true,
    capAdd: checkCaps(strings(flags['cap-add'])),
    capDrop: checkCaps(strings(flags['cap-drop'])),
    cpuShares: (flags['cpu-shares'] as number | undefined) ?? 1024,
    annotations: labelArgs(strings(flags.label)),
  };
  if (flags.cwd) opts.cwd = flags.cwd as string;
  if (flags.user) opts.user = flags.user as string;
  if (flags.hostname) opts.hostname = flags.hostname as string;
  if (flags['memory-limit']) opts.memoryLimit = flags['memory-limit'] as number;
  if (cgroupGiven) opts.cgroup = (flags.cgroup as string | undefined) ?? '';
  return opts;
}

/**
 * Builds the spec with the container's root filesystem readable: mounted read-only on a
 * temporary directory when we are root (the daemon's snapshot mounts are host paths: it
 * runs on this host), otherwise read from the image's layers through the content store.
 */
async function generateWithRootfs(
  client: Client,
  ctx: Context,
  specCtx: { namespace: string; id: string },
  opts: oci.SpecOpt[],
  rootfs: { mounts: Mount[]; layers: Descriptor[] },
): Promise<oci.Spec> {
  const { oci: o, layersReader, withReadonlyRootfs } = clientModule();
  if (process.getuid?.() === 0 && rootfs.mounts.length > 0) {
    return withReadonlyRootfs(rootfs.mounts, (dir) => o.generateSpec({ ...specCtx, rootfs: dir }, ...opts));
  }
  return o.generateSpec({ ...specCtx, rootfs: layersReader(client, ctx, rootfs.layers) }, ...opts);
}

export interface NewContainer {
  container: Container;
  /** The mounts of its snapshot (what a task's rootfs is), when made from an image. */
  mounts: Mount[];
}

/**
 * Creates container `id` from image `ref` (or a root filesystem directory with --rootfs), as
 * ctr's NewContainer: the snapshot and record are made under a lease, so a failure half-way
 * leaves nothing that garbage collection keeps.
 */
export async function createContainer(
  g: Globals,
  flags: FlagValues,
  ref: string,
  id: string,
  args: string[],
  cgroupGiven: boolean,
): Promise<NewContainer> {
  api().validateIdentifier(id);
  const { client, ctx } = g.session();
  const { oci: o, chainIdOf, unpackLayers } = clientModule();
  const runOpts = runSpecOptions(flags, args, cgroupGiven);
  const labels = labelArgs(strings(flags.label));
  const runtime = { name: flags.runtime as string };
  const specCtx = { namespace: g.namespace, id };

  if (flags.rootfs) {
    runOpts.rootfsPath = resolve(ref);
    const spec = await o.generateSpec(specCtx, ...o.runSpecOpts(runOpts));
    const container = await client.containers.create(ctx, {
      id,
      labels,
      image: '',
      runtime,
      spec: o.specToAny(spec),
      snapshotter: '',
      snapshotKey: '',
      extensions: {},
      sandbox: '',
    });
    return { container, mounts: [] };
  }

  const image = await client.images.get(ctx, ref);
  const { manifest } = await resolveManifest(client, ctx, image.target);
  if (!manifest.config) throw new (api().InvalidArgumentError)(`image ${image.name}: manifest has no config`);
  const configBlob = await readBlob(client, ctx, manifest.config);
  const config = o.parseImageConfig(configBlob);
  const diffIds: string[] = JSON.parse(configBlob.toString()).rootfs?.diff_ids ?? [];
  const layerDescs = manifest.layers ?? [];
  if (diffIds.length !== layerDescs.length) {
    throw new (api().InvalidArgumentError)(
      `image ${image.name}: mismatched image rootfs and manifest layers (${diffIds.length} diff ids, ${layerDescs.length} layers)`,
    );
  }
  runOpts.image = config;
  const snapshotter = flags.snapshotter as string;

  const lease = await client.leases.create(ctx, {
    labels: { 'containerd.io/gc.expire': new Date(Date.now() + 24 * 3600_000).toISOString() },
  });
  const leased: Context = { ...ctx, lease: lease.id };
  let prepared = false;
  try {
    const chainId = chainIdOf(diffIds);
    let unpacked = true;
    try {
      await client.snapshots(snapshotter).stat(leased, chainId);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ERR_NOT_FOUND') throw err;
      unpacked = false;
    }
    if (!unpacked) {
      await unpackLayers(
        client,
        leased,
        snapshotter,
        layerDescs.map((blob, i) => ({ blob, diffId: diffIds[i]! })),
        { config: manifest.config.digest },
      );
    }
    const mounts = await client.snapshots(snapshotter).prepare(leased, id, chainId, {
      labels: labelArgs(strings(flags['snapshotter-label'])),
    });
    prepared = true;
    const spec = await generateWithRootfs(client, leased, specCtx, o.runSpecOpts(runOpts), {
      mounts,
      layers: layerDescs,
    });
    const imageLabels: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...(config.Labels ?? {}), ...image.labels })) {
      // As ctr: an image label the daemon would refuse is skipped, not fatal.
      if (k.length + v.length <= 4096) imageLabels[k] = v;
    }
    const container = await client.containers.create(leased, {
      id,
      labels: { ...imageLabels, ...labels, [STOP_SIGNAL_LABEL]: config.StopSignal || 'SIGTERM' },
      image: image.name,
      runtime,
      spec: o.specToAny(spec),
      snapshotter,
      snapshotKey: id,
      extensions: {},
      sandbox: '',
    });
    prepared = false;
    return { container, mounts };
  } finally {
    // A snapshot we prepared for a container that was not made goes now, so the id is free
    // again at once (not only after the next garbage collection).
    if (prepared)
      await client
        .snapshots(snapshotter)
        .remove(ctx, id)
        .catch(() => {});
    await client.leases.delete(ctx, lease.id).catch(() => {});
  }
}

/** The container's spec (the JSON its record carries). */
export function containerSpec(c: Container): oci.Spec {
  if (!c.spec || c.spec.value.length === 0)
    throw new (api().NotFoundError)(`container "${c.id}" has no spec`);
  return JSON.parse(c.spec.value.toString()) as oci.Spec;
}

/** The mounts a task of container c gets as its root filesystem (none for --rootfs containers). */
export async function rootfsMounts(client: Client, ctx: Context, c: Container): Promise<Mount[]> {
  if (!c.snapshotter || !c.snapshotKey) return [];
  return client.snapshots(c.snapshotter).mounts(ctx, c.snapshotKey);
}
