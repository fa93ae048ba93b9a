import { type NativeSnapshotter, openNativeSnapshotter } from './native';
import { type OverlaySnapshotter, openOverlaySnapshotter } from './overlay';

/** `[plugins."io.containerd.snapshotter.v1.overlayfs"]` in config.toml (containerd's keys). */
export interface OverlayConfig {
  /** Root directory instead of the plugin's own `<root>/io.containerd.snapshotter.v1.overlayfs`. */
  root_path?: string;
  upperdir_label?: boolean;
  /** Delete a removed snapshot's files at once instead of at the next garbage collection. */
  sync_remove?: boolean;
  /** Options added to every overlay mount. */
  mount_options?: string[];
}

/** `[plugins."io.containerd.snapshotter.v1.native"]` in config.toml. */
export interface NativeConfig {
  root_path?: string;
}

export const defaultOverlayConfig = (): OverlayConfig => ({
  root_path: '',
  upperdir_label: false,
  sync_remove: false,
  mount_options: [],
});

export const defaultNativeConfig = (): NativeConfig => ({ root_path: '' });

/**
 * What a registration calls: the daemon hands the plugin's directory and its config. As
 * containerd's plugin, removal is deferred to cleanup() (driven by garbage collection)
 * unless sync_remove is set.
 */
export function overlayFromConfig(root: string, config: OverlayConfig = {}): Promise<OverlaySnapshotter> {
  return openOverlaySnapshotter(config.root_path || root, {
    upperdirLabel: config.upperdir_label ?? false,
    asyncRemove: !(config.sync_remove ?? false),
    mountOptions: config.mount_options ?? [],
  });
}

export function nativeFromConfig(root: string, config: NativeConfig = {}): Promise<NativeSnapshotter> {
  return openNativeSnapshotter(config.root_path || root);
}
