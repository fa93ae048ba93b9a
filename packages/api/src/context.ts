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
