import {
  type Container,
  containerFromWire,
  containerToWire,
  contentInfoFromWire,
  contentInfoToWire,
  decodeMessage,
  deletedProcessFromWire,
  descriptorFromWire,
  descriptorToWire,
  encodeMessage,
  envelopeFromWire,
  envelopeToWire,
  fromTimestamp,
  type Image,
  imageFromWire,
  imageToWire,
  ingestStatusFromWire,
  ingestStatusToWire,
  leaseFromWire,
  leaseResourceFromWire,
  leaseToWire,
  mountFromWire,
  mountToWire,
  processFromWire,
  type SnapshotInfo,
  snapshotInfoFromWire,
  snapshotInfoToWire,
  snapshotKindFromWire,
  snapshotUsageFromWire,
  toTimestamp,
} from '@berth/api';

const at = new Date('2024-05-06T07:08:09.123Z');

/** Encodes a message through the generated codec and decodes it back, as the wire would. */
const overWire = <T extends object>(type: string, m: T): T => decodeMessage<T>(type, encodeMessage(type, m));

describe('timestamps', () => {
  it('carry milliseconds both ways; an absent timestamp is the epoch', () => {
    expect(toTimestamp(at)).toEqual({ seconds: 1714979289, nanos: 123_000_000 });
    expect(fromTimestamp(toTimestamp(at))).toEqual(at);
    expect(fromTimestamp(toTimestamp(new Date(-1)))).toEqual(new Date(-1));
    expect(fromTimestamp(undefined)).toEqual(new Date(0));
    expect(fromTimestamp(null)).toEqual(new Date(0));
  });
});

describe('domain <-> wire', () => {
  it('round-trips a container, Anys and times included', () => {
    const c: Container = {
      id: 'web',
      labels: { a: 'b' },
      image: 'docker.io/library/busybox:latest',
      runtime: { name: 'io.containerd.runc.v2', options: { typeUrl: 'x.Options', value: Buffer.from([1]) } },
      spec: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Spec', value: Buffer.from('{}') },
      snapshotter: 'overlayfs',
      snapshotKey: 'web',
      extensions: { ext: { typeUrl: 'x.Ext', value: Buffer.from([2, 3]) } },
      sandbox: '',
      createdAt: at,
      updatedAt: at,
    };
    expect(
      containerFromWire(overWire('containerd.services.containers.v1.Container', containerToWire(c))),
    ).toEqual(c);
    // An input without times or options: absent on the wire, epoch and no options back.
    const bare = containerFromWire(containerToWire({ ...c, runtime: { name: 'r' }, spec: undefined }));
    expect(bare.runtime).toEqual({ name: 'r' });
    expect(bare.spec).toBeUndefined();
    expect(containerToWire({ ...c, createdAt: undefined, updatedAt: undefined }).createdAt).toBeUndefined();
  });

  it('round-trips an image; a missing target stays missing for the store to refuse', () => {
    const image: Image = {
      name: 'x/y:1',
      labels: {},
      target: { mediaType: 'application/vnd.oci.image.index.v1+json', digest: 'sha256:ab', size: 2 ** 40 },
      createdAt: at,
      updatedAt: at,
    };
    expect(imageFromWire(overWire('containerd.services.images.v1.Image', imageToWire(image)))).toEqual(image);
    expect(
      imageFromWire({ name: 'n', labels: {}, target: undefined, createdAt: undefined, updatedAt: undefined })
        .target,
    ).toBeUndefined();
  });

  it('keeps descriptor annotations only when there are some', () => {
    const d = { mediaType: 'm', digest: 'sha256:1', size: 3 };
    expect(descriptorFromWire(descriptorToWire(d))).toEqual(d);
    const annotated = { ...d, annotations: { k: 'v' } };
    expect(descriptorFromWire(overWire('containerd.types.Descriptor', descriptorToWire(annotated)))).toEqual(
      annotated,
    );
    expect(descriptorFromWire(undefined)).toEqual({ mediaType: '', digest: '', size: 0 });
  });

  it('keeps a mount target only when set', () => {
    expect(mountFromWire(mountToWire({ type: 'bind', source: '/a', options: ['rbind'] }))).toEqual({
      type: 'bind',
      source: '/a',
      options: ['rbind'],
    });
    expect(mountFromWire(mountToWire({ type: 'bind', source: '/a', target: 'b', options: [] })).target).toBe(
      'b',
    );
  });

  it('round-trips content infos, ingest statuses and leases', () => {
    const info = { digest: 'sha256:ab', size: 5, createdAt: at, updatedAt: at, labels: { l: 'v' } };
    expect(
      contentInfoFromWire(overWire('containerd.services.content.v1.Info', contentInfoToWire(info))),
    ).toEqual(info);
    const st = { ref: 'r', offset: 1, total: 9, expected: 'sha256:cd', startedAt: at, updatedAt: at };
    expect(ingestStatusFromWire(ingestStatusToWire(st))).toEqual(st);
    const lease = { id: 'l', createdAt: at, labels: {} };
    expect(leaseFromWire(overWire('containerd.services.leases.v1.Lease', leaseToWire(lease)))).toEqual(lease);
    expect(leaseResourceFromWire(undefined)).toEqual({ id: '', type: '' });
  });

  it('round-trips snapshot infos; an unknown kind reads as committed, as containerd', () => {
    const info: SnapshotInfo = {
      kind: 'active',
      name: 'k',
      parent: 'p',
      labels: {},
      createdAt: at,
      updatedAt: at,
    };
    const wire = snapshotInfoToWire(info);
    expect(wire.kind).toBe('ACTIVE');
    expect(snapshotInfoFromWire(overWire('containerd.services.snapshots.v1.Info', wire))).toEqual(info);
    expect(snapshotKindFromWire('UNKNOWN')).toBe('committed');
    expect(snapshotUsageFromWire({ size: 4096, inodes: 3 })).toEqual({ size: 4096, inodes: 3 });
  });

  it('round-trips an envelope; processes and deletes fill defaults', () => {
    const env = {
      timestamp: at,
      namespace: 'ns',
      topic: '/tasks/exit',
      event: { typeUrl: 't', value: Buffer.from([9]) },
    };
    expect(envelopeFromWire(overWire('containerd.services.events.v1.Envelope', envelopeToWire(env)))).toEqual(
      env,
    );
    expect(processFromWire({ containerId: 'c' })).toEqual({
      id: '',
      containerId: 'c',
      pid: 0,
      status: 'UNKNOWN',
      stdin: '',
      stdout: '',
      stderr: '',
      terminal: false,
      exitStatus: 0,
      exitedAt: new Date(0),
    });
    expect(deletedProcessFromWire({ id: 'e', pid: 7, exitStatus: 137, exitedAt: toTimestamp(at) })).toEqual({
      id: 'e',
      pid: 7,
      exitStatus: 137,
      exitedAt: at,
    });
  });
});
