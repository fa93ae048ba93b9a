import { InvalidArgumentError, TTRPC_NAMESPACE_HEADER } from '@berth/api';
import type { KeyValue } from './envelope';

/** ttrpc metadata as a handler sees it: every value a key was sent with, in order. */
export type TtrpcMetadata = Record<string, string[]>;

/** Metadata a caller sends: one value or several per key. */
export type MetadataInit = Readonly<Record<string, string | readonly string[]>>;

/** Builds the wire list; `namespace` becomes containerd's `containerd-namespace-ttrpc` key. */
export function metadataList(
  init: MetadataInit | undefined,
  namespace: string | undefined,
): KeyValue[] | undefined {
  if (init === undefined && namespace === undefined) return undefined;
  const out: KeyValue[] = [];
  if (namespace !== undefined) out.push({ key: TTRPC_NAMESPACE_HEADER, value: namespace });
  if (init !== undefined) {
    for (const key of Object.keys(init)) {
      const v = init[key];
      if (typeof v === 'string') out.push({ key, value: v });
      else for (const value of v) out.push({ key, value });
    }
  }
  return out;
}

/** Groups wire key/values; keys are kept as sent (Go's server does not fold case either). */
export function metadataRecord(list: readonly KeyValue[]): TtrpcMetadata {
  const md: TtrpcMetadata = Object.create(null);
  for (const { key, value } of list) {
    const values = md[key];
    if (values === undefined) md[key] = [value];
    else values.push(value);
  }
  return md;
}

/**
 * The filesystem path (or abstract name) of a ttrpc address. containerd writes shim
 * addresses as `unix:///run/containerd/s/<hash>`; bare paths are accepted too, and an
 * abstract socket is written with a leading NUL ("\0name") as Node expects.
 */
export function socketPath(address: string): string {
  if (address.startsWith('unix://')) {
    const path = address.slice('unix://'.length);
    if (path === '') throw new InvalidArgumentError(`ttrpc address ${JSON.stringify(address)}: empty path`);
    return checkLength(path);
  }
  if (address === '' || /^[a-z][a-z0-9+.-]*:\/\//i.test(address)) {
    throw new InvalidArgumentError(
      `ttrpc address ${JSON.stringify(address)}: expected unix://PATH or a path`,
    );
  }
  return checkLength(address);
}

/** sun_path holds 108 bytes with its NUL; a longer path would be cut short, not refused. */
const SUN_PATH_MAX = 107;

function checkLength(path: string): string {
  if (Buffer.byteLength(path) > SUN_PATH_MAX) {
    throw new InvalidArgumentError(`ttrpc socket ${path}: path longer than ${SUN_PATH_MAX} bytes`);
  }
  return path;
}
