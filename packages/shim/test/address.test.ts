import { addressPath, groupKey, socketAddress } from '../src/address';

test('a group annotation wins over the default grouping; ours first, then runc.v2; a CRI pod shares the namespace shim', () => {
  expect(groupKey('c1', undefined, 'namespace')).toBe('namespace');
  expect(groupKey('c1', {}, 'container')).toBe('container:c1');
  expect(groupKey('c1', { 'io.kubernetes.cri.sandbox-id': 'pod' }, 'container')).toBe('container:c1');
  expect(groupKey('c1', { 'io.kubernetes.cri.sandbox-id': 'pod' }, 'namespace')).toBe('namespace');
  expect(
    groupKey(
      'c1',
      { 'io.containerd.runc.v2.group': 'g2', 'io.containerd.berth.v1.group': 'g1' },
      'namespace',
    ),
  ).toBe('group:g1');
  expect(groupKey('c1', { 'io.containerd.berth.v1.group': '' }, 'container')).toBe('container:c1');
});

test('socket addresses are stable per daemon, namespace and group, and fit a unix socket path', () => {
  const a = socketAddress('/run/berth/berth.sock', 'default', 'namespace', '/run/berth/s');
  expect(a).toMatch(/^unix:\/\/\/run\/berth\/s\/[0-9a-f]{64}$/);
  expect(socketAddress('/run/berth/berth.sock', 'default', 'namespace', '/run/berth/s')).toBe(a);
  expect(socketAddress('/run/other.sock', 'default', 'namespace', '/run/berth/s')).not.toBe(a);
  expect(socketAddress('/run/berth/berth.sock', 'k8s.io', 'namespace', '/run/berth/s')).not.toBe(a);
  expect(socketAddress('/run/berth/berth.sock', 'default', 'container:x', '/run/berth/s')).not.toBe(a);
  expect(addressPath(a).length).toBeLessThan(108);
  expect(addressPath('/plain/path')).toBe('/plain/path');
});
