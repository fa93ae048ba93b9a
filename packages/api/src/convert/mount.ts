import type { Mount as MountMessage } from '../gen/containerd/types/mount';
import type { Mount } from '../mount';

export function mountToWire(m: Mount): MountMessage {
  return { type: m.type, source: m.source, target: m.target ?? '', options: [...m.options] };
}

/** A Mount off the wire; target only when set. */
export function mountFromWire(m: MountMessage): Mount {
  const out: Mount = { type: m.type ?? '', source: m.source ?? '', options: [...(m.options ?? [])] };
  if (m.target) out.target = m.target;
  return out;
}
