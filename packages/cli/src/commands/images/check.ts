import type { Context, Descriptor, Image } from '@berth/api';
import type { Client } from '@berth/client';
import type { CommandSpec } from '../../args';
import { binarySize, imageConfig, resolveManifest } from '../../image-content';
import { SNAPSHOTTER_FLAG } from '../../image-transfer';
import { type Globals, print, printJson, ReportedError } from '../../runtime';
import { CTR_SPACES, formatTable } from '../../tabwriter';

const isNotFound = (e: unknown) => (e as { code?: string })?.code === 'ERR_NOT_FOUND';

interface CheckResult {
  available: boolean;
  required: Descriptor[];
  present: Descriptor[];
  missing: Descriptor[];
}

/** containerd's images.Check: the config and layers of this host's manifest, present or not. */
async function check(client: Client, ctx: Context, target: Descriptor): Promise<CheckResult> {
  let manifest: Awaited<ReturnType<typeof resolveManifest>>['manifest'];
  try {
    manifest = (await resolveManifest(client, ctx, target)).manifest;
  } catch (e) {
    if (isNotFound(e)) return { available: false, required: [target], present: [], missing: [target] };
    throw e;
  }
  const required = [...(manifest.config ? [manifest.config] : []), ...(manifest.layers ?? [])];
  const present: Descriptor[] = [];
  const missing: Descriptor[] = [];
  for (const d of required) {
    try {
      await client.content.info(ctx, d.digest);
      present.push(d);
    } catch (e) {
      if (!isNotFound(e)) throw e;
      missing.push(d);
    }
  }
  return { available: true, required, present, missing };
}

/** Whether the image's layers are unpacked in the snapshotter (its top chain ID exists). */
async function isUnpacked(client: Client, ctx: Context, image: Image, snapshotter: string): Promise<boolean> {
  const { chainId } = await imageConfig(client, ctx, image.target);
  try {
    await client.snapshots(snapshotter).stat(ctx, chainId);
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

export const checkCommand: CommandSpec<Globals> = {
  name: 'check',
  summary: 'check that an image has all its content available locally',
  argsUsage: '[<filter>...]',
  description:
    "For each image (matching the filters), whether this host's manifest, config and layers are " +
    'in the content store, and whether it is unpacked in the snapshotter; as ctr images check.',
  flags: [
    { name: 'quiet', short: 'q', type: 'bool', description: 'print only the names of complete images' },
    SNAPSHOTTER_FLAG,
  ],
  async run({ args, flags, global: g }) {
    const { client, ctx } = g.session();
    const snapshotter = (flags.snapshotter as string) || 'overlayfs';
    const images = await client.images.list(ctx, args);
    let failure: string | undefined;
    const rows: Array<Record<string, unknown>> = [];
    let text = 'REF\tTYPE\tDIGEST\tSTATUS\tSIZE\tUNPACKED\t\n';
    const quiet: string[] = [];
    for (const image of images) {
      let status = 'complete';
      let size = '-';
      let complete = true;
      let result: CheckResult | undefined;
      try {
        result = await check(client, ctx, image.target);
      } catch (e) {
        failure ??= `unable to check ${image.name}: ${(e as Error).message}`;
        g.io.stderr.write(`berth: unable to check ${image.name}: ${(e as Error).message}\n`);
        status = 'error';
        complete = false;
      }
      if (result) {
        const sum = (ds: Descriptor[]) => ds.reduce((n, d) => n + d.size, 0);
        if (result.missing.length > 0) {
          status = 'incomplete';
          complete = false;
        }
        if (result.available) {
          status += ` (${result.present.length}/${result.required.length})`;
          size = `${binarySize(sum(result.present))}/${binarySize(sum(result.required))}`;
        } else {
          status = `unavailable (${result.present.length}/?)`;
          size = `${binarySize(sum(result.present))}/?`;
          complete = false;
        }
      }
      let unpacked = false;
      try {
        unpacked = result?.available ? await isUnpacked(client, ctx, image, snapshotter) : false;
      } catch (e) {
        failure ??= `unable to check unpack for ${image.name}: ${(e as Error).message}`;
        g.io.stderr.write(`berth: unable to check unpack for ${image.name}: ${(e as Error).message}\n`);
      }
      if (complete) quiet.push(image.name);
      rows.push({ name: image.name, target: image.target, status, size, complete, unpacked });
      text += `${image.name}\t${image.target.mediaType}\t${image.target.digest}\t${status}\t${size}\t${unpacked}\n`;
    }
    if (flags.quiet) print(g, quiet.map((n) => `${n}\n`).join(''));
    else if (g.format === 'json') printJson(g, rows);
    else print(g, formatTable(text, CTR_SPACES));
    if (failure) throw new ReportedError();
  },
};
