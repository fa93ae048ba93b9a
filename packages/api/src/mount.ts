/** A mount as containerd.types.Mount carries it: a description, performed by @berth/sys. */
export interface Mount {
  /** Filesystem type: `overlay`, `bind`, `tmpfs`... */
  type: string;
  source: string;
  /** Optional sub-path below the mount point (containerd's `target` for multi-mounts). */
  target?: string;
  options: string[];
}
