import { groupKey, socketAddress } from '@berth/shim';
import { berthShimAddress, isBerthShim, specAnnotations } from '../src/runtime/berth-shim';

describe("berth shim's address as berthd computes it", () => {
  const daemon = '/run/berth/berth.sock';
  const dir = '/run/berth/s';

  it('is the address the shim itself binds, for every way of grouping', () => {
    const cases: [Record<string, string> | undefined, 'namespace' | 'container'][] = [
      [undefined, 'namespace'],
      [undefined, 'container'],
      [{ 'io.containerd.berth.v1.group': 'g1' }, 'namespace'],
      [{ 'io.containerd.runc.v2.group': 'g2', 'io.kubernetes.cri.sandbox-id': 'pod' }, 'container'],
      [{ 'io.kubernetes.cri.sandbox-id': 'pod' }, 'namespace'],
      [{ 'io.containerd.berth.v1.group': '' }, 'namespace'],
    ];
    for (const [annotations, grouping] of cases) {
      const env = { BERTH_SHIM_GROUPING: grouping };
      expect(berthShimAddress(daemon, 'ns1', 'c1', annotations, env)).toBe(
        socketAddress(daemon, 'ns1', groupKey('c1', annotations, grouping), dir),
      );
    }
  });

  it('differs between namespaces and daemons, and follows BERTH_SHIM_SOCKET_DIR', () => {
    const a = berthShimAddress(daemon, 'ns1', 'c1', undefined, {});
    expect(berthShimAddress(daemon, 'ns2', 'c1', undefined, {})).not.toBe(a);
    expect(berthShimAddress('/other.sock', 'ns1', 'c1', undefined, {})).not.toBe(a);
    expect(berthShimAddress(daemon, 'ns1', 'c2', undefined, {})).toBe(a);
    expect(berthShimAddress(daemon, 'ns1', 'c1', undefined, { BERTH_SHIM_SOCKET_DIR: '/tmp/x' })).toMatch(
      /^unix:\/\/\/tmp\/x\/[0-9a-f]{64}$/,
    );
  });

  it('reads annotations from the spec bytes, and none from bytes that are not a spec', () => {
    expect(specAnnotations(Buffer.from('{"annotations":{"a":"b"}}'))).toEqual({ a: 'b' });
    expect(specAnnotations(Buffer.from('{"process":{}}'))).toBeUndefined();
    expect(specAnnotations(Buffer.from('not json'))).toBeUndefined();
  });

  it('knows its own shim binary by name only', () => {
    expect(isBerthShim('/work/bin/containerd-shim-berth-v1')).toBe(true);
    expect(isBerthShim('/usr/bin/containerd-shim-runc-v2')).toBe(false);
    expect(isBerthShim('/x/containerd-shim-berth-v1-wrapper')).toBe(false);
  });
});
