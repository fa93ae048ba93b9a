import { mkdirSync } from 'node:fs';
import { PluginType, SkipPluginError } from '@berth/api';
import {
  checkOverlaySupport,
  defaultNativeConfig,
  defaultOverlayConfig,
  type NativeConfig,
  type NativeSnapshotter,
  nativeFromConfig,
  type OverlayConfig,
  type OverlaySnapshotter,
  overlayFromConfig,
} from '@berth/snapshotter';
import type { DaemonRegistration } from '../registry';
import { hostPlatform } from './platform';

/**
 * io.containerd.snapshotter.v1 "overlayfs": `<root>/io.containerd.snapshotter.v1.overlayfs`
 * (or `root_path`). Skipped, as containerd, where overlayfs cannot mount.
 */
export const overlayfsPlugin: DaemonRegistration<OverlayConfig, OverlaySnapshotter> = {
  type: PluginType.Snapshot,
  id: 'overlayfs',
  config: defaultOverlayConfig(),
  init: async (ic) => {
    ic.platforms.push(hostPlatform());
    const root = ic.config.root_path || ic.root;
    mkdirSync(root, { recursive: true, mode: 0o700 });
    try {
      await checkOverlaySupport(root);
    } catch (e) {
      throw new SkipPluginError(`overlayfs is not supported at ${root}: ${(e as Error).message}`);
    }
    ic.exports.root = root;
    return overlayFromConfig(root, ic.config);
  },
};

/** io.containerd.snapshotter.v1 "native": full copies, for any filesystem. */
export const nativePlugin: DaemonRegistration<NativeConfig, NativeSnapshotter> = {
  type: PluginType.Snapshot,
  id: 'native',
  config: defaultNativeConfig(),
  init: async (ic) => {
    ic.platforms.push(hostPlatform());
    const root = ic.config.root_path || ic.root;
    mkdirSync(root, { recursive: true, mode: 0o700 });
    return nativeFromConfig(root, ic.config);
  },
};
