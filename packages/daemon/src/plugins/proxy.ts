import { PluginType } from '@berth/api';
import { Client, connectSnapshotter } from '@berth/client';
import type { ProxyPluginConfig } from '../config';
import type { DaemonRegistration } from '../registry';

/** `[proxy_plugins.<name>] type` values and the plugin type each becomes (as containerd). */
const PROXY_TYPES: Record<string, string> = {
  snapshot: PluginType.Snapshot,
  [PluginType.Snapshot]: PluginType.Snapshot,
  content: PluginType.Content,
  [PluginType.Content]: PluginType.Content,
};

export const isProxyType = (type: string): boolean => PROXY_TYPES[type] !== undefined;

/**
 * One registration per `[proxy_plugins.<name>]`: a snapshotter (or content store) served by
 * another process on a unix socket, reached over containerd's gRPC API. The connection is
 * lazy, as containerd's: the plugin loads even while the server is not up yet, and calls
 * fail with Unavailable until it is. Unknown types are left out (the daemon warns).
 */
export function proxyRegistrations(
  proxies: Record<string, ProxyPluginConfig>,
): DaemonRegistration<undefined, unknown>[] {
  const out: DaemonRegistration<undefined, unknown>[] = [];
  for (const [name, pp] of Object.entries(proxies)) {
    const type = PROXY_TYPES[pp.type];
    if (!type) continue;
    out.push({
      type,
      id: name,
      init: (ic) => {
        ic.exports.address = pp.address;
        if (type === PluginType.Snapshot) return connectSnapshotter(pp.address, name);
        const client = new Client(pp.address);
        const store = client.content;
        // The registry closes instances that have close(): let it end the connection.
        return Object.assign(Object.create(store), { close: async () => client.close() });
      },
    });
  }
  return out;
}
