import {
  type InterfaceAdapter,
  InterfaceVersionError,
  InterfaceVersions,
  PluginType,
  parseInterfaceId,
  resolveInterface,
} from '@berth/api';

describe('interface versions', () => {
  test('every PluginType id is the version its family is offered at', () => {
    for (const id of Object.values(PluginType)) {
      const v = parseInterfaceId(id)!;
      expect(InterfaceVersions[v.family]).toEqual(v);
    }
    expect(InterfaceVersions['io.containerd.snapshotter']).toEqual({
      id: 'io.containerd.snapshotter.v1',
      family: 'io.containerd.snapshotter',
      version: 1,
    });
    expect(InterfaceVersions['io.containerd.runtime']!.version).toBe(2);
  });

  test('parseInterfaceId splits family and version; ids without one are undefined', () => {
    expect(parseInterfaceId('io.containerd.content.v12')).toEqual({
      id: 'io.containerd.content.v12',
      family: 'io.containerd.content',
      version: 12,
    });
    for (const bad of ['io.containerd.content', 'io.containerd.content.v0', 'v1', 'a.v1x']) {
      expect(parseInterfaceId(bad)).toBeUndefined();
    }
  });

  test('the offered version passes unchanged, as do ids outside berthd’s families', () => {
    const impl = {};
    for (const id of [PluginType.Snapshot, 'example.widget.v3', 't.grpc']) {
      const r = resolveInterface('p', id);
      expect(r.id).toBe(id);
      expect(r.adapt(impl)).toBe(impl);
    }
  });

  test('another version is refused, naming the plugin, what it implements and what is offered', () => {
    const err = (() => {
      try {
        resolveInterface('io.containerd.snapshotter.v1.quota', 'io.containerd.snapshotter.v2');
      } catch (e) {
        return e;
      }
    })() as InterfaceVersionError;
    expect(err).toBeInstanceOf(InterfaceVersionError);
    expect(err.code).toBe('ERR_FAILED_PRECONDITION');
    expect(err.message).toBe(
      'plugin "io.containerd.snapshotter.v1.quota" implements io.containerd.snapshotter.v2, berthd offers io.containerd.snapshotter.v1',
    );
    expect(err).toMatchObject({
      plugin: 'io.containerd.snapshotter.v1.quota',
      implemented: 'io.containerd.snapshotter.v2',
      offered: 'io.containerd.snapshotter.v1',
    });
  });

  test('an adapter from the implemented version to the offered one is applied', () => {
    // What a v2 of the snapshotter interface would ship: v2 offered, v1 plugins adapted.
    const offered = {
      ...InterfaceVersions,
      'io.containerd.snapshotter': {
        id: 'io.containerd.snapshotter.v2',
        family: 'io.containerd.snapshotter',
        version: 2,
      },
    };
    const adapter: InterfaceAdapter<{ v: number }, { v: number; adapted: true }> = {
      from: 'io.containerd.snapshotter.v1',
      to: 'io.containerd.snapshotter.v2',
      adapt: (impl) => ({ ...impl, adapted: true }),
    };
    const r = resolveInterface('old', 'io.containerd.snapshotter.v1', [adapter], offered);
    expect(r.id).toBe('io.containerd.snapshotter.v2');
    expect(r.adapt({ v: 1 })).toEqual({ v: 1, adapted: true });
    // No adapter for v3 -> v2: refused all the same.
    expect(() => resolveInterface('new', 'io.containerd.snapshotter.v3', [adapter], offered)).toThrow(
      'plugin "new" implements io.containerd.snapshotter.v3, berthd offers io.containerd.snapshotter.v2',
    );
  });
});
