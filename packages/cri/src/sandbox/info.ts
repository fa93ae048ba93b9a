import type { NetworkAttachment } from '@berth/cni';

/** go-cni's Result, as containerd's PodSandboxStatus verbose info prints it (`cniResult`). */
export interface GoCniResult {
  Interfaces: Record<
    string,
    { IPConfigs: { IP: string; Gateway: string }[] | null; Mac: string; Sandbox: string }
  >;
  DNS: Record<string, unknown>[];
  Routes: { dst: string; gw?: string }[];
}

/** go-cni's createResult: every network's interfaces by name, each with the IPs that point at it. */
export function goCniResult(attachments: readonly NetworkAttachment[]): GoCniResult {
  const out: GoCniResult = { Interfaces: {}, DNS: [], Routes: [] };
  for (const a of attachments) {
    const dns: Record<string, unknown> = {};
    if (a.dns?.nameservers?.length) dns.nameservers = a.dns.nameservers;
    if (a.dns?.domain) dns.domain = a.dns.domain;
    if (a.dns?.search?.length) dns.search = a.dns.search;
    if (a.dns?.options?.length) dns.options = a.dns.options;
    out.DNS.push(dns);
    out.Routes.push(...(a.routes ?? []));
    for (const i of a.interfaces)
      out.Interfaces[i.name] = { IPConfigs: null, Mac: i.mac ?? '', Sandbox: i.sandbox ?? '' };
    for (const ip of a.ips) {
      const intf = ip.interface !== undefined ? a.interfaces[ip.interface] : undefined;
      if (!intf) continue;
      const entry = out.Interfaces[intf.name]!;
      entry.IPConfigs ??= [];
      entry.IPConfigs.push({ IP: ip.address.split('/')[0]!, Gateway: ip.gateway ?? '' });
    }
  }
  return out;
}

// The CRI enums Go's encoding/json writes as numbers.
const ENUMS: Record<string, Record<string, number>> = {
  protocol: { TCP: 0, UDP: 1, SCTP: 2 },
  network: { POD: 0, CONTAINER: 1, NODE: 2, TARGET: 3 },
  pid: { POD: 0, CONTAINER: 1, NODE: 2, TARGET: 3 },
  ipc: { POD: 0, CONTAINER: 1, NODE: 2, TARGET: 3 },
  mode: { POD: 0, CONTAINER: 1, NODE: 2, TARGET: 3 },
  profileType: { RuntimeDefault: 0, Unconfined: 1, Localhost: 2 },
  propagation: { PROPAGATION_PRIVATE: 0, PROPAGATION_HOST_TO_CONTAINER: 1, PROPAGATION_BIDIRECTIONAL: 2 },
};
// Maps whose keys are the user's, not field names.
const FREE_MAPS = new Set(['labels', 'annotations', 'sysctls', 'unified']);

const snake = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

function empty(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === 0 || v === false) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v as object).length === 0;
  return false;
}

/**
 * A CRI message as containerd prints it in verbose info: Go's encoding/json over the
 * gogo-generated structs, so snake_case names, `omitempty` everywhere, enums as numbers.
 */
export function goJson(msg: unknown, key = ''): unknown {
  if (Array.isArray(msg)) return msg.map((m) => goJson(m, key));
  if (typeof msg === 'string' && ENUMS[key]?.[msg] !== undefined) return ENUMS[key][msg];
  if (msg === null || typeof msg !== 'object') return msg;
  if (Buffer.isBuffer(msg) || msg instanceof Uint8Array) return Buffer.from(msg).toString('base64');
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(msg)) {
    const value = FREE_MAPS.has(k) ? v : goJson(v, k);
    if (empty(value)) continue;
    out[snake(k)] = value;
  }
  return out;
}
