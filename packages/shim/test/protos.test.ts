import { encodeMessage, InvalidArgumentError } from '@berth/api';
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
  // An Any of a type the shim does not know is refused with the type named.
  const unknown = () => decodeRuncOptions({ typeUrl: 'example.com/acme.Options', value });
  expect(unknown).toThrow(InvalidArgumentError);
  expect(unknown).toThrow('runtime options of type "example.com/acme.Options"');
  // `start` reads the shim cgroup from the same Any without a protobuf library.
  const any = Buffer.concat([lengthField(1, 'containerd.runc.v1.Options'), lengthField(2, value)]);
  expect(shimCgroupOf(any)).toBe('/shims');
  expect(shimCgroupOf(Buffer.alloc(0))).toBe('');
});

test('encoding refuses values of the wrong kind', () => {
  expect(() => encodeShimMessage('containerd.runc.v1.Options', { binaryName: 7 })).toThrow('binaryName');
});

test("the v1 runtime's options containerd's client sends to other runtimes map onto the runc.v1 ones", () => {
  const runc = encodeMessage('containerd.linux.runc.RuncOptions', {
    runtime: '/opt/bin/my-runc',
    runtimeRoot: '/run/my-runc',
    criuPath: '/opt/bin/criu',
    systemdCgroup: true,
  });
  expect(decodeRuncOptions({ typeUrl: 'containerd.linux.runc.RuncOptions', value: runc })).toEqual(
    expect.objectContaining({
      binaryName: '/opt/bin/my-runc',
      root: '/run/my-runc',
      criuPath: '/opt/bin/criu',
      systemdCgroup: true,
      noPivotRoot: false,
      shimCgroup: '',
    }),
  );
  const create = encodeMessage('containerd.linux.runc.CreateOptions', {
    noPivotRoot: true,
    noNewKeyring: true,
    shimCgroup: '/shims',
    ioUid: 1000,
    ioGid: 1001,
  });
  expect(decodeRuncOptions({ typeUrl: 'containerd.linux.runc.CreateOptions', value: create })).toEqual(
    expect.objectContaining({
      noPivotRoot: true,
      noNewKeyring: true,
      shimCgroup: '/shims',
      ioUid: 1000,
      ioGid: 1001,
      binaryName: '',
      root: '',
    }),
  );
  expect(() =>
    decodeRuncOptions({ typeUrl: 'containerd.linux.runc.RuncOptions', value: Buffer.from([0x08]) }),
  ).toThrow(InvalidArgumentError);
  // `start` finds the shim cgroup where each type keeps it; criu_path (field 3 of RuncOptions) is none.
  const anyOf = (typeUrl: string, value: Buffer) =>
    Buffer.concat([lengthField(1, typeUrl), lengthField(2, value)]);
  expect(shimCgroupOf(anyOf('containerd.linux.runc.CreateOptions', create))).toBe('/shims');
  expect(shimCgroupOf(anyOf('containerd.linux.runc.RuncOptions', runc))).toBe('');
});
