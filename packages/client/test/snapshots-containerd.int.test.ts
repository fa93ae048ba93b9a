import { type Client, connect } from '@berth/client';
import { runSnapshotterSuite } from '@berth/snapshotter/testing';
import { containerdInstalled, type Daemon, startContainerd } from '@berth/testkit';

// The snapshotter conformance suite through RemoteSnapshotter against Debian's containerd
// (overlayfs and native): proves the client speaks containerd's Snapshots API, and that the
// suite asks only what containerd's snapshotters do. Needs root.
const haveContainerd = containerdInstalled() && process.getuid?.() === 0;

let daemon: Daemon | undefined;
let client: Client | undefined;
let seq = 0;

afterAll(async () => {
  client?.close();
  await daemon?.dispose();
});

async function remote(name: string) {
  daemon ??= await startContainerd();
  client ??= connect(daemon.address);
  const ctx = { namespace: `suite-${name}-${++seq}` };
  return { snapshotter: client.snapshots(name), ctx, cleanup: async () => {} };
}

/**
 * Where berth is stricter than containerd 1.6: an empty key reaches bbolt ("bucket name
 * required", Unknown) instead of InvalidArgument, and List streams a malformed filter's
 * parse error without a code (Unknown). Each check got as far as that step against it.
 */
const skip = ['PrepareViewFailing', 'Walk'];

if (haveContainerd) {
  runSnapshotterSuite('containerd overlayfs via RemoteSnapshotter', () => remote('overlayfs'), { skip });
  runSnapshotterSuite('containerd native via RemoteSnapshotter', () => remote('native'), { skip });
} else {
  it.skip('needs root and containerd', () => {});
}
