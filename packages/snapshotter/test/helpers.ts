import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkOverlaySupport } from '@berth/snapshotter';

let base: Promise<string> | undefined;

/** A directory for test roots on a filesystem where overlayfs works: os.tmpdir(), else /var/tmp. */
export function testBase(): Promise<string> {
  base ??= (async () => {
    for (const dir of [tmpdir(), '/var/tmp']) {
      try {
        await checkOverlaySupport(dir);
        return dir;
      } catch {}
    }
    throw new Error(`overlayfs does not work in ${tmpdir()} nor /var/tmp`);
  })();
  return base;
}

export async function tempRoot(prefix: string): Promise<{ root: string; remove: () => Promise<void> }> {
  const root = await mkdtemp(join(await testBase(), `${prefix}-`));
  return { root, remove: () => rm(root, { recursive: true, force: true }) };
}
