import { decodeMessage } from '@berth/api';
import { encodeDeleteResponse, mountedUnder } from '../src/cleanup';

test('the hand-encoded DeleteResponse is what containerd decodes', () => {
  const bytes = encodeDeleteResponse({
    pid: 4242,
    exitStatus: 137,
    exitedAt: { seconds: 1795547244, nanos: 225000000 },
  });
  expect(decodeMessage('containerd.task.v2.DeleteResponse', bytes)).toEqual({
    pid: 4242,
    exitStatus: 137,
    exitedAt: { seconds: 1795547244, nanos: 225000000 },
  });
  expect(
    decodeMessage(
      'containerd.task.v2.DeleteResponse',
      encodeDeleteResponse({ pid: 0, exitStatus: 137, exitedAt: { seconds: 5, nanos: 0 } }),
    ),
  ).toEqual({
    pid: 0,
    exitStatus: 137,
    exitedAt: { seconds: 5, nanos: 0 },
  });
});

test('mountedUnder finds mounts at or below a directory, not beside it', () => {
  const info = [
    '35 31 0:32 / /run/b/rootfs rw - overlay overlay rw',
    '36 31 0:33 / /run/b/rootfs/proc rw - proc proc rw',
    '37 31 0:34 / /run/with\\040space/rootfs rw - tmpfs tmpfs rw',
  ].join('\n');
  expect(mountedUnder('/run/b/rootfs', info)).toBe(true);
  expect(mountedUnder('/run/b/root', info)).toBe(false);
  expect(mountedUnder('/run/with space/rootfs', info)).toBe(true);
  expect(mountedUnder('/run/c/rootfs', info)).toBe(false);
});
