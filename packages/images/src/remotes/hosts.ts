import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { InvalidArgumentError } from '@berth/api';
import { HttpTransport, type TlsSettings } from './http';

// smol-toml ships a CommonJS build whose types are declared as an ES module (as the daemon's config reader notes).
const { parse: parseToml } = require('smol-toml') as { parse: (text: string) => Record<string, unknown> };

export type HostCapability = 'pull' | 'resolve' | 'push';
const ALL_CAPABILITIES: HostCapability[] = ['pull', 'resolve', 'push'];

/** One registry endpoint to talk to for a domain (a mirror, or the domain itself). */
export interface RegistryHost {
  scheme: 'http' | 'https';
  /** `host[:port]` */
  host: string;
  /** API root, `/v2` unless overridden. */
  path: string;
  capabilities: HostCapability[];
  /** Extra headers sent with every request (hosts.toml `header`). */
  header: Record<string, string[]>;
  tls: TlsSettings;
  transport: HttpTransport;
}

export type RegistryHosts = (domain: string) => Promise<RegistryHost[]>;

export interface HostsOptions {
  /**
   * containerd's `config_path`: `<dir>/<host>/hosts.toml` (`<host>` with `:port` written
   * as `_port_` first, then as is, then `_default`) configures mirrors, TLS and headers.
   */
  hostsDir?: string;
  /** Talk plain http to every host without a hosts.toml saying otherwise (ctr's --plain-http). */
  plainHttp?: boolean;
  /** Skip TLS verification for hosts without a hosts.toml saying otherwise. */
  skipVerify?: boolean;
}

/** containerd's IsLocalhost: `localhost` or a loopback address, with or without a port. */
export function isLocalhost(host: string): boolean {
  let h = host;
  if (h.startsWith('[')) h = h.slice(1, h.indexOf(']'));
  else if (/:\d+$/.test(h) && h.split(':').length === 2) h = h.slice(0, h.lastIndexOf(':'));
  if (h === 'localhost') return true;
  if (/^127\.\d+\.\d+\.\d+$/.test(h)) return true;
  return h === '::1';
}

interface ParsedHost {
  scheme?: 'http' | 'https';
  host?: string;
  path?: string;
  capabilities: HostCapability[];
  header: Record<string, string[]>;
  caFiles?: string[];
  clientPairs?: Array<[string, string | undefined]>;
  skipVerify?: boolean;
}

/** `<host>` with `:port` as `_port_`, then `<host>`, then `_default` (containerd's hostPaths). */
export function hostDirCandidates(root: string, host: string): string[] {
  const out: string[] = [];
  const i = host.lastIndexOf(':');
  if (i > 0) out.push(join(root, `${host.slice(0, i)}_${host.slice(i + 1)}_`));
  out.push(join(root, host), join(root, '_default'));
  return out;
}

async function findHostDir(root: string, host: string): Promise<string | undefined> {
  for (const p of hostDirCandidates(root, host)) {
    try {
      await stat(p);
      return p;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return undefined;
}

function stringList(v: unknown, what: string, file: string): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  throw new InvalidArgumentError(
    `${file}: invalid type for ${JSON.stringify(what)}: want a string or a list of strings`,
  );
}

function parseHostSection(
  server: string,
  table: Record<string, unknown>,
  baseDir: string,
  file: string,
): ParsedHost {
  const out: ParsedHost = { capabilities: [...ALL_CAPABILITIES], header: {} };
  const plainHttp = table.plain_http === true;
  if (server !== '') {
    const withScheme = /^https?:\/\//.test(server) ? server : `${plainHttp ? 'http' : 'https'}://${server}`;
    let u: URL;
    try {
      u = new URL(withScheme);
    } catch {
      throw new InvalidArgumentError(`${file}: unable to parse server ${JSON.stringify(server)}`);
    }
    out.scheme = u.protocol === 'http:' ? 'http' : 'https';
    out.host = u.host;
    let path = u.pathname.replace(/\/+$/, '');
    // override_path: the URL's path is the API root, as written (containerd's OverridePath).
    if (table.override_path !== true && !path.endsWith('/v2')) path = `${path}/v2`;
    out.path = path;
  } else if (plainHttp) {
    out.scheme = 'http';
  }
  if (table.capabilities !== undefined) {
    const caps = stringList(table.capabilities, 'capabilities', file).map((c) => c.toLowerCase());
    for (const c of caps) {
      if (!ALL_CAPABILITIES.includes(c as HostCapability)) {
        throw new InvalidArgumentError(`${file}: unknown capability ${JSON.stringify(c)}`);
      }
    }
    out.capabilities = caps as HostCapability[];
  }
  if (typeof table.skip_verify === 'boolean') out.skipVerify = table.skip_verify;
  const abs = (p: string) => (isAbsolute(p) ? p : join(baseDir, p));
  if (table.ca !== undefined) out.caFiles = stringList(table.ca, 'ca', file).map(abs);
  if (table.client !== undefined) {
    const c = table.client;
    const pairs: Array<[string, string | undefined]> = [];
    const list = typeof c === 'string' ? [c] : Array.isArray(c) ? c : undefined;
    if (!list) throw new InvalidArgumentError(`${file}: invalid type for "client"`);
    for (const p of list) {
      if (typeof p === 'string') pairs.push([abs(p), undefined]);
      else if (Array.isArray(p) && p.length === 2 && p.every((x) => typeof x === 'string')) {
        pairs.push([abs(p[0] as string), abs(p[1] as string)]);
      } else throw new InvalidArgumentError(`${file}: invalid pair ${JSON.stringify(p)} for "client"`);
    }
    out.clientPairs = pairs;
  }
  if (table.header !== undefined) {
    if (typeof table.header !== 'object' || table.header === null || Array.isArray(table.header)) {
      throw new InvalidArgumentError(`${file}: invalid type for "header"`);
    }
    for (const [k, v] of Object.entries(table.header)) out.header[k] = stringList(v, `header ${k}`, file);
  }
  return out;
}

/** Parses a hosts.toml: `[host."..."]` entries in file order, then the `server` (or the default). */
export function parseHostsToml(text: string, baseDir: string, file = 'hosts.toml'): ParsedHost[] {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    throw new InvalidArgumentError(`${file}: failed to parse TOML: ${(e as Error).message}`);
  }
  const hosts: ParsedHost[] = [];
  const table = doc.host;
  if (table !== undefined) {
    if (typeof table !== 'object' || table === null || Array.isArray(table)) {
      throw new InvalidArgumentError(`${file}: invalid "host" table`);
    }
    // smol-toml keeps keys in file order, which is the order mirrors are tried in.
    for (const [server, cfg] of Object.entries(table as Record<string, unknown>)) {
      hosts.push(parseHostSection(server, (cfg ?? {}) as Record<string, unknown>, baseDir, file));
    }
  }
  const server = typeof doc.server === 'string' ? doc.server : '';
  hosts.push(parseHostSection(server, doc, baseDir, file));
  return hosts;
}

async function readAll(files: string[] | undefined, what: string): Promise<Buffer[] | undefined> {
  if (!files) return undefined;
  return Promise.all(
    files.map(async (f) => {
      try {
        return await readFile(f);
      } catch (e) {
        throw new InvalidArgumentError(
          `unable to read ${what} ${JSON.stringify(f)}: ${(e as Error).message}`,
        );
      }
    }),
  );
}

/**
 * containerd's ConfigureHosts: the endpoints to try for a domain. Without a hosts.toml:
 * docker.io is registry-1.docker.io over https, localhost and 127.0.0.1 plain http, any
 * other host https (or http with `plainHttp`).
 */
export function configureHosts(opts: HostsOptions = {}): RegistryHosts {
  const transports = new Map<string, HttpTransport>();
  const transportFor = (tls: TlsSettings): HttpTransport => {
    const key = JSON.stringify({
      ca: tls.ca?.map((b) => b.toString('base64')),
      s: tls.skipVerify,
      c: tls.cert?.map((b) => b.toString('base64')),
    });
    let t = transports.get(key);
    if (!t) {
      t = new HttpTransport(tls);
      transports.set(key, t);
    }
    return t;
  };

  return async (domain: string) => {
    let parsed: ParsedHost[] | undefined;
    if (opts.hostsDir) {
      const dir = await findHostDir(opts.hostsDir, domain);
      if (dir) {
        const file = join(dir, 'hosts.toml');
        let text: string | undefined;
        try {
          text = await readFile(file, 'utf8');
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        }
        if (text !== undefined && text.trim() !== '') parsed = parseHostsToml(text, dir, file);
      }
    }
    parsed ??= [{ capabilities: [...ALL_CAPABILITIES], header: {} }];
    const last = parsed[parsed.length - 1]!;
    if (last.host === undefined) {
      last.path = '/v2';
      last.capabilities = [...ALL_CAPABILITIES];
      if (domain === 'docker.io') {
        last.host = 'registry-1.docker.io';
        last.scheme = 'https';
      } else {
        last.host = domain;
        if (last.scheme === undefined) {
          if (isLocalhost(domain)) last.scheme = 'http';
          else last.scheme = opts.plainHttp ? 'http' : 'https';
        }
      }
    }
    const out: RegistryHost[] = [];
    for (const h of parsed) {
      const tls: TlsSettings = {};
      const skip = h.skipVerify ?? opts.skipVerify;
      if (skip !== undefined) tls.skipVerify = skip;
      const ca = await readAll(h.caFiles, 'CA cert');
      if (ca) tls.ca = ca;
      if (h.clientPairs) {
        tls.cert = [];
        tls.key = [];
        for (const [cert, key] of h.clientPairs) {
          const [c] = (await readAll([cert], 'client cert'))!;
          tls.cert.push(c!);
          tls.key.push(key ? (await readAll([key], 'client key'))![0]! : c!);
        }
      }
      out.push({
        scheme: h.scheme ?? 'https',
        host: h.host!,
        path: h.path ?? '/v2',
        capabilities: h.capabilities,
        header: h.header,
        tls,
        transport: transportFor(tls),
      });
    }
    return out;
  };
}
