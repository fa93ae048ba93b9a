import { decodeRuncOptions, encodeShimMessage } from '../src/protos';
import { shimCgroupOf } from '../src/start';
import { lengthField } from '../src/wire';

test('runtime options decode from containerd.runc.v1.Options, and default without an Any', () => {
  const value = encodeShimMessage('containerd.runc.v1.Options', {
    binaryName: 'crun',
    root: '/run/x',
    systemdCgroup: true,
    ioUid: 1000,
    shimCgroup: '/shims',
  });
  expect(decodeRuncOptions({ typeUrl: 'containerd.runc.v1.Options', value })).toMatchObject({
    binaryName: 'crun',
    root: '/run/x',
    systemdCgroup: true,
    ioUid: 1000,
    noPivotRoot: false,
  });
  expect(decodeRuncOptions(null)).toMatchObject({ binaryName: '', root: '', systemdCgroup: false });
  expect(() => decodeRuncOptions({ typeUrl: 'containerd.linux.runc.RuncOptions', value })).toThrow(
    'expected containerd.runc.v1.Options',
  );
  // `start` reads the shim cgroup from the same Any without a protobuf library.
  const any = Buffer.concat([lengthField(1, 'containerd.runc.v1.Options'), lengthField(2, value)]);
  expect(shimCgroupOf(any)).toBe('/shims');
  expect(shimCgroupOf(Buffer.alloc(0))).toBe('');
});

test('encoding refuses values of the wrong kind', () => {
  expect(() => encodeShimMessage('containerd.runc.v1.Options', { binaryName: 7 })).toThrow('binaryName');
});
