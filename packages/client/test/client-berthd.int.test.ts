import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Client, connect } from '@berth/client';
import { runContentStoreSuite } from '@berth/content/testing';
import { type Daemon, repoRoot, startBerthd } from '@berth/testkit';

// The same content conformance suite through the client against berthd (built dist).
const built = existsSync(join(repoRoot, 'packages', 'daemon', 'dist', 'main.js'));

let daemon: Daemon | undefined;
let client: Client | undefined;

afterAll(async () => {
  client?.close();
  await daemon?.dispose();
});

if (built) {
  runContentStoreSuite('@berth/client -> berthd', async () => {
    daemon ??= await startBerthd();
    client ??= connect(daemon.address);
    const ns = { namespace: 'berth-suite' };
    const c = client;
    const lease = await c.leases.create(ns, {});
    return {
      store: c.content,
      ctx: { ...ns, lease: lease.id },
      cleanup: () => c.leases.delete(ns, lease.id),
    };
  });
} else {
  it.skip('needs a built berthd (pnpm build)', () => {});
}
