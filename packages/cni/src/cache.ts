import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The result cache, in libcni's layout and format (`<cacheDir>/results/<net>-<id>-<ifName>`,
 * kind "cniCacheV1", config as base64 as Go marshals a []byte), so a cache written by
 * containerd is read by berth and the other way round.
 */
export interface CacheEntry {
  network: string;
  containerId: string;
  ifName: string;
  /** The network list's bytes as ADD used them. */
  config: Buffer;
  cniArgs: [string, string][];
  capabilityArgs: Record<string, unknown>;
  result: unknown;
}

export const CACHE_KIND = 'cniCacheV1';

export const cacheFile = (cacheDir: string, network: string, containerId: string, ifName: string) =>
  join(cacheDir, 'results', `${network}-${containerId}-${ifName}`);

export async function writeCache(cacheDir: string, e: CacheEntry): Promise<void> {
  const file = cacheFile(cacheDir, e.network, e.containerId, e.ifName);
  await mkdir(join(cacheDir, 'results'), { recursive: true, mode: 0o700 });
  const doc: Record<string, unknown> = {
    kind: CACHE_KIND,
    containerId: e.containerId,
    config: e.config.toString('base64'),
    ifName: e.ifName,
    networkName: e.network,
  };
  if (e.cniArgs.length > 0) doc.cniArgs = e.cniArgs;
  if (Object.keys(e.capabilityArgs).length > 0) doc.capabilityArgs = e.capabilityArgs;
  if (e.result !== undefined) doc.result = e.result;
  // a crash mid-write must not leave half a file that makes a later DEL fail to parse it
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(doc), { mode: 0o600 });
  await rename(tmp, file);
}

export async function removeCache(cacheDir: string, network: string, containerId: string, ifName: string) {
  await rm(cacheFile(cacheDir, network, containerId, ifName), { force: true });
}

/** Every cached attachment of `containerId`, whatever network config is loaded now. */
export async function readCacheEntries(cacheDir: string, containerId: string): Promise<CacheEntry[]> {
  const dir = join(cacheDir, 'results');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: CacheEntry[] = [];
  for (const n of names.sort()) {
    if (!n.includes(`-${containerId}-`) || n.includes('.tmp-')) continue;
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(await readFile(join(dir, n), 'utf8'));
    } catch {
      continue; // unreadable or foreign file: DEL falls back to the loaded config for that network
    }
    if (doc.kind !== CACHE_KIND || doc.containerId !== containerId) continue;
    if (typeof doc.networkName !== 'string' || typeof doc.ifName !== 'string') continue;
    if (n !== `${doc.networkName}-${containerId}-${doc.ifName}`) continue;
    out.push({
      network: doc.networkName,
      containerId,
      ifName: doc.ifName,
      config: typeof doc.config === 'string' ? Buffer.from(doc.config, 'base64') : Buffer.alloc(0),
      cniArgs: Array.isArray(doc.cniArgs) ? (doc.cniArgs as [string, string][]) : [],
      capabilityArgs: (doc.capabilityArgs as Record<string, unknown>) ?? {},
      result: doc.result,
    });
  }
  return out;
}
