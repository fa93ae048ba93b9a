/** One network's outcome of ADD, read from the plugin chain's final result (any spec version). */
export interface NetworkAttachment {
  network: string;
  ifName: string;
  ips: { version: '4' | '6'; address: string; gateway?: string; interface?: number }[];
  interfaces: { name: string; mac?: string; sandbox?: string }[];
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
  routes?: { dst: string; gw?: string }[];
  /** The last plugin's result as it printed it. */
  raw: unknown;
}

export function toAttachment(network: string, ifName: string, raw: unknown): NetworkAttachment {
  const r = (raw ?? {}) as Record<string, any>;
  const ips: NetworkAttachment['ips'] = [];
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  if (Array.isArray(r.ips)) {
    for (const ip of r.ips) {
      const address = str(ip?.address);
      if (!address) continue;
      // 1.0.0 dropped "version"; the address says it
      const version = ip.version === '6' || (ip.version !== '4' && address.includes(':')) ? '6' : '4';
      const e: NetworkAttachment['ips'][number] = { version, address };
      if (str(ip.gateway)) e.gateway = ip.gateway;
      if (typeof ip.interface === 'number') e.interface = ip.interface;
      ips.push(e);
    }
  } else {
    // spec 0.1.0/0.2.0: ip4 / ip6 objects
    for (const [key, version] of [
      ['ip4', '4'],
      ['ip6', '6'],
    ] as const) {
      const address = str(r[key]?.ip);
      if (!address) continue;
      const e: NetworkAttachment['ips'][number] = { version, address };
      if (str(r[key].gateway)) e.gateway = r[key].gateway;
      ips.push(e);
    }
  }
  const interfaces: NetworkAttachment['interfaces'] = [];
  if (Array.isArray(r.interfaces)) {
    for (const i of r.interfaces) {
      if (!str(i?.name)) continue;
      const e: NetworkAttachment['interfaces'][number] = { name: i.name };
      if (str(i.mac)) e.mac = i.mac;
      if (str(i.sandbox)) e.sandbox = i.sandbox;
      interfaces.push(e);
    }
  }
  const out: NetworkAttachment = { network, ifName, ips, interfaces, raw };
  const dns = r.dns;
  if (dns && typeof dns === 'object' && Object.keys(dns).length > 0) out.dns = dns;
  const routes = Array.isArray(r.routes) ? r.routes : [...(r.ip4?.routes ?? []), ...(r.ip6?.routes ?? [])];
  if (routes.length > 0)
    out.routes = routes
      .filter((x: any) => str(x?.dst))
      .map((x: any) => (str(x.gw) ? { dst: x.dst, gw: x.gw } : { dst: x.dst }));
  return out;
}
