import { FailedPreconditionError } from './errors';
import { validateIdentifier } from './identifiers';

/**
 * What containerd carries in a Go context.Context: the namespace, the lease and
 * cancellation. Every namespaced method takes one as its first argument.
 */
export interface Context {
  readonly namespace?: string;
  readonly lease?: string;
  readonly signal?: AbortSignal;
}

/** gRPC metadata keys containerd uses on the wire. */
export const NAMESPACE_HEADER = 'containerd-namespace';
export const LEASE_HEADER = 'containerd-lease';
/** ttrpc carries the namespace under this key too (containerd's shims read it). */
export const TTRPC_NAMESPACE_HEADER = 'containerd-namespace-ttrpc';

export const DEFAULT_NAMESPACE = 'default';

/**
 * The value containerd reads from a metadata key: the first one sent. containerd's Go
 * client appends a value each time a context is namespaced again (newest first), and
 * Node's HTTP/2 joins repeated header values with ", " before any JS sees them, so
 * `"conf-sn-1, testsuite"` means `"conf-sn-1"`. Namespaces and lease ids cannot hold a
 * comma, so cutting at the first one is exact.
 */
export function firstMetadataValue(
  v: string | Buffer | readonly (string | Buffer)[] | undefined,
): string | undefined {
  const first = Array.isArray(v) ? v[0] : v;
  if (first === undefined) return undefined;
  const s = typeof first === 'string' ? first : first.toString();
  const comma = s.indexOf(',');
  return comma === -1 ? s : s.slice(0, comma).trimEnd();
}

export function withNamespace(ctx: Context, namespace: string): Context {
  return { ...ctx, namespace };
}

export function withLease(ctx: Context, lease: string | undefined): Context {
  return { ...ctx, lease };
}

/** The namespace of ctx, validated; FailedPrecondition when there is none (as containerd). */
export function requireNamespace(ctx: Context): string {
  const ns = ctx.namespace;
  if (ns === undefined || ns === '') throw new FailedPreconditionError('namespace is required');
  validateIdentifier(ns);
  return ns;
}

export const background = (): Context => ({});
