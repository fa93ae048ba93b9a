/**
 * Client-side unpack of an image's layers into a snapshotter through the daemon's Diff
 * service, as containerd's image.Unpack and rootfs.ApplyLayers: one committed snapshot per
 * layer, named by the chain id of the layers up to it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type Context, type Descriptor, InvalidArgumentError } from '@berth/api';
import type { Client } from './client';

export interface UnpackLayer {
  /** The layer blob in the content store (compressed or not). */
  blob: Descriptor;
  /** The digest of the uncompressed layer tar (the image config's rootfs.diff_ids entry). */
  diffId: string;
}

export interface UnpackOptions {
  /**
   * The image config's digest: labelled `containerd.io/gc.ref.snapshot.<snapshotter>` =
   * chain id afterwards, so garbage collection keeps the snapshots while the image lives.
   */
  config?: string;
}

export interface UnpackResult {
  /** The chain id of all layers: the name of the top snapshot (a container's parent). */
  chainId: string;
  /** How many layers were applied now (0: the image was unpacked already). */
  applied: number;
}

/** identity.ChainID: the first diff id, then sha256("<parent> <diff id>") for each next one. */
export function chainIdOf(diffIds: readonly string[]): string {
  let chain = '';
  for (const d of diffIds) {
    chain = chain === '' ? d : `sha256:${createHash('sha256').update(`${chain} ${d}`).digest('hex')}`;
  }
  return chain;
}

const codeOf = (err: unknown): string | undefined => (err as { code?: string } | undefined)?.code;

/**
 * Applies the layers that are not yet in snapshotter `snapshotter`, bottom first. Run it
 * under a lease (ctx.lease) as containerd does, so half-done work is collected if we die.
 */
export async function unpackLayers(
  client: Client,
  ctx: Context,
  snapshotter: string,
  layers: readonly UnpackLayer[],
  opts: UnpackOptions = {},
): Promise<UnpackResult> {
  const sn = client.snapshots(snapshotter);
  const chain: string[] = [];
  let applied = 0;
  for (const layer of layers) {
    const parent = chainIdOf(chain);
    chain.push(layer.diffId);
    const chainId = chainIdOf(chain);
    try {
      await sn.stat(ctx, chainId);
      continue;
    } catch (err) {
      if (codeOf(err) !== 'ERR_NOT_FOUND') throw err;
    }
    const key = `extract-${process.hrtime.bigint() % 1_000_000_000n}-${randomBytes(3).toString('base64url')} ${chainId}`;
    const mounts = await sn.prepare(ctx, key, parent);
    try {
      const diff = await client.diff.apply(ctx, layer.blob, mounts);
      if (diff.digest !== layer.diffId) {
        throw new InvalidArgumentError(
          `layer ${layer.blob.digest}: wrong diff id calculated on extraction "${diff.digest}" (expected ${layer.diffId})`,
        );
      }
      await sn.commit(ctx, chainId, key);
      applied++;
    } catch (err) {
      await sn.remove(ctx, key).catch(() => {});
      // Someone else unpacked the same layer meanwhile: theirs will do.
      if (codeOf(err) !== 'ERR_ALREADY_EXISTS') throw err;
      continue;
    }
    await client.content
      .update(ctx, { digest: layer.blob.digest, labels: { 'containerd.io/uncompressed': layer.diffId } }, [
        'labels.containerd.io/uncompressed',
      ])
      .catch(() => {});
  }
  const chainId = chainIdOf(chain);
  if (opts.config && chainId) {
    const label = `containerd.io/gc.ref.snapshot.${snapshotter}`;
    await client.content.update(ctx, { digest: opts.config, labels: { [label]: chainId } }, [
      `labels.${label}`,
    ]);
  }
  return { chainId, applied };
}
