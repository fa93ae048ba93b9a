import { randomBytes } from 'node:crypto';
import type { Context } from '@berth/api';
import type { Client } from '@berth/client';
import type { CommandSpec } from '../args';
import { binarySize } from '../image-content';
import { type Globals, print, printJson } from '../runtime';

/** What the daemon holds: blobs by namespace, snapshots by snapshotter and namespace. */
interface Inventory {
  /** digest -> size, over every namespace (the backing store keeps one copy). */
  blobs: Map<string, number>;
  /** `<namespace> <digest>` */
  blobRecords: Set<string>;
  /** `<snapshotter> <namespace> <key>` -> bytes used (when measured). */
  snapshots: Map<string, number | undefined>;
}

const SNAPSHOTTER_TYPE = 'io.containerd.snapshotter.v1';

async function snapshotters(client: Client): Promise<string[]> {
  const plugins = await client.plugins([`type==${SNAPSHOTTER_TYPE}`]);
  return plugins.filter((p) => !p.initErr).map((p) => p.id);
}

async function inventory(
  client: Client,
  base: Context,
  namespaces: string[],
  sns: string[],
  measure: boolean,
): Promise<Inventory> {
  const inv: Inventory = { blobs: new Map(), blobRecords: new Set(), snapshots: new Map() };
  for (const ns of namespaces) {
    const ctx = { ...base, namespace: ns };
    for (const info of await client.content.list(ctx)) {
      inv.blobs.set(info.digest, info.size);
      inv.blobRecords.add(`${ns} ${info.digest}`);
    }
    for (const sn of sns) {
      const keys: string[] = [];
      await client.snapshots(sn).walk(ctx, (info) => {
        keys.push(info.name);
      });
      for (const key of keys) {
        let used: number | undefined;
        if (measure) {
          try {
            used = (await client.snapshots(sn).usage(ctx, key)).size;
          } catch {
            used = undefined; // removed meanwhile, or not measurable
          }
        }
        inv.snapshots.set(`${sn} ${ns} ${key}`, used);
      }
    }
  }
  return inv;
}

/**
 * `berth gc`: containerd has no garbage-collection RPC; deleting a lease with `sync` makes
 * the daemon collect before it answers (what `ctr leases rm --sync` does). What went is
 * found by listing every namespace's content and snapshots before and after, so the report
 * is what the daemon really removed, from berthd and containerd alike.
 */
export const gcCommand: CommandSpec<Globals> = {
  name: 'gc',
  summary: 'collect garbage now and report what was removed',
  description:
    'Run a garbage collection in the daemon (through a synchronous lease deletion, as containerd ' +
    'has no gc call) and print the blobs and snapshots it removed with the bytes reclaimed. ' +
    'A blob still held by another namespace is counted as removed from its namespace but not as ' +
    'reclaimed. Snapshot sizes are measured before the collection (--no-measure skips that).',
  flags: [
    { name: 'verbose', short: 'v', type: 'bool', description: 'list every removed blob and snapshot' },
    { name: 'no-measure', type: 'bool', description: 'do not measure snapshot disk usage' },
  ],
  async run({ flags, global: g }) {
    const { client, ctx } = g.session();
    const started = Date.now();
    const namespaces = await client.namespaces.list(ctx);
    const sns = await snapshotters(client);
    const measure = flags['no-measure'] !== true;
    const before = await inventory(client, ctx, namespaces, sns, measure);

    const lctx = { ...ctx, namespace: namespaces[0] ?? ctx.namespace };
    const lease = await client.leases.create(lctx, { id: `berth-gc-${randomBytes(6).toString('hex')}` });
    await client.leases.delete(lctx, lease.id, { sync: true });

    const after = await inventory(client, ctx, namespaces, sns, false);
    const removedBlobs = [...before.blobRecords].filter((r) => !after.blobRecords.has(r));
    const reclaimedBlobs = [...before.blobs.keys()].filter((d) => !after.blobs.has(d));
    const blobBytes = reclaimedBlobs.reduce((n, d) => n + (before.blobs.get(d) ?? 0), 0);
    const removedSnapshots = [...before.snapshots.keys()].filter((k) => !after.snapshots.has(k));
    const snapshotBytes = removedSnapshots.reduce((n, k) => n + (before.snapshots.get(k) ?? 0), 0);
    const secs = (Date.now() - started) / 1000;

    if (g.format === 'json') {
      printJson(g, {
        content: removedBlobs.map((r) => {
          const [namespace, digest] = r.split(' ') as [string, string];
          return { namespace, digest, size: before.blobs.get(digest), reclaimed: !after.blobs.has(digest) };
        }),
        snapshots: removedSnapshots.map((r) => {
          const [snapshotter, namespace, key] = r.split(' ') as [string, string, string];
          return { snapshotter, namespace, key, size: before.snapshots.get(r) };
        }),
        contentBytes: blobBytes,
        snapshotBytes,
        reclaimedBytes: blobBytes + snapshotBytes,
        seconds: secs,
      });
      return;
    }
    let text = '';
    if (flags.verbose) {
      for (const r of removedBlobs) {
        const [ns, digest] = r.split(' ') as [string, string];
        const size = before.blobs.get(digest) ?? 0;
        text += `removed content ${digest} (${ns}) ${binarySize(size)}${after.blobs.has(digest) ? ' (still held by another namespace)' : ''}\n`;
      }
      for (const r of removedSnapshots) {
        const [sn, ns, key] = r.split(' ') as [string, string, string];
        const size = before.snapshots.get(r);
        text += `removed snapshot ${sn}/${key} (${ns})${size === undefined ? '' : ` ${binarySize(size)}`}\n`;
      }
    }
    if (removedBlobs.length === 0 && removedSnapshots.length === 0) {
      // Not an error: berthd and containerd both collect shortly after every deletion.
      print(
        g,
        `nothing to collect: no unreferenced content or snapshots left (the daemon collects after deletions on its own) in ${secs.toFixed(2)} s\n`,
      );
      return;
    }
    text +=
      `removed ${removedBlobs.length} blob${removedBlobs.length === 1 ? '' : 's'} (${binarySize(blobBytes)}) ` +
      `and ${removedSnapshots.length} snapshot${removedSnapshots.length === 1 ? '' : 's'}` +
      `${measure ? ` (${binarySize(snapshotBytes)})` : ''}: ` +
      `${binarySize(blobBytes + snapshotBytes)} reclaimed in ${secs.toFixed(2)} s\n`;
    print(g, text);
  },
};
