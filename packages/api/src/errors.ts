/**
 * The error classes every berth package throws. Each has a literal `code` so callers
 * narrow on `err.code`; translation to and from gRPC status codes happens only in
 * grpc-status.ts, at the edge.
 */
export type ErrorCode =
  | 'ERR_NOT_FOUND'
  | 'ERR_ALREADY_EXISTS'
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_FAILED_PRECONDITION'
  | 'ERR_UNAVAILABLE'
  | 'ERR_NOT_IMPLEMENTED'
  | 'ERR_ABORTED'
  | 'ERR_CANCELED'
  | 'ERR_DEADLINE_EXCEEDED'
  | 'ERR_RESOURCE_EXHAUSTED'
  | 'ERR_PERMISSION_DENIED'
  | 'ERR_OUT_OF_RANGE'
  | 'ERR_UNKNOWN';

export abstract class BerthError extends Error {
  abstract readonly code: ErrorCode;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class NotFoundError extends BerthError {
  readonly code = 'ERR_NOT_FOUND' as const;
}
export class AlreadyExistsError extends BerthError {
  readonly code = 'ERR_ALREADY_EXISTS' as const;
}
export class InvalidArgumentError extends BerthError {
  readonly code = 'ERR_INVALID_ARGUMENT' as const;
}
export class FailedPreconditionError extends BerthError {
  readonly code = 'ERR_FAILED_PRECONDITION' as const;
}
export class UnavailableError extends BerthError {
  readonly code = 'ERR_UNAVAILABLE' as const;
}
export class NotImplementedError extends BerthError {
  readonly code = 'ERR_NOT_IMPLEMENTED' as const;
}
export class AbortedError extends BerthError {
  readonly code = 'ERR_ABORTED' as const;
}
export class CanceledError extends BerthError {
  readonly code = 'ERR_CANCELED' as const;
}
export class DeadlineExceededError extends BerthError {
  readonly code = 'ERR_DEADLINE_EXCEEDED' as const;
}
export class ResourceExhaustedError extends BerthError {
  readonly code = 'ERR_RESOURCE_EXHAUSTED' as const;
}
export class PermissionDeniedError extends BerthError {
  readonly code = 'ERR_PERMISSION_DENIED' as const;
}
export class OutOfRangeError extends BerthError {
  readonly code = 'ERR_OUT_OF_RANGE' as const;
}
export class UnknownError extends BerthError {
  readonly code = 'ERR_UNKNOWN' as const;
}

/**
 * A write refused because the file system (or a quota) is full: ENOSPC, EDQUOT, SQLite's
 * SQLITE_FULL. Unknown on the wire, as containerd answers a full disk; `path` names the file
 * being written, and the message says what was being written.
 */
export class NoSpaceError extends UnknownError {
  constructor(
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Whether `e` is an errno (or SQLite) error that means "no space left". */
export const isNoSpaceErrno = (e: unknown): boolean => {
  const code = (e as { code?: unknown })?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
};

/**
 * The typed error for a full disk: `<what>: write <path>: no space left on device`
 * (containerd's wording after the prefix). Any other error is returned unchanged.
 */
export function noSpaceError(e: unknown, path: string, what: string): unknown {
  if (e instanceof NoSpaceError || !isNoSpaceErrno(e)) return e;
  const reason =
    (e as { code?: string }).code === 'EDQUOT' ? 'disk quota exceeded' : 'no space left on device';
  return new NoSpaceError(path, `${what}: write ${path}: ${reason}`, { cause: e });
}

export const isNotFound = (e: unknown): e is NotFoundError => (e as BerthError)?.code === 'ERR_NOT_FOUND';
export const isAlreadyExists = (e: unknown): e is AlreadyExistsError =>
  (e as BerthError)?.code === 'ERR_ALREADY_EXISTS';
export const isInvalidArgument = (e: unknown): e is InvalidArgumentError =>
  (e as BerthError)?.code === 'ERR_INVALID_ARGUMENT';
export const isFailedPrecondition = (e: unknown): e is FailedPreconditionError =>
  (e as BerthError)?.code === 'ERR_FAILED_PRECONDITION';
export const isUnavailable = (e: unknown): e is UnavailableError =>
  (e as BerthError)?.code === 'ERR_UNAVAILABLE';
export const isBerthError = (e: unknown): e is BerthError => e instanceof BerthError;
export const isNoSpace = (e: unknown): e is NoSpaceError => e instanceof NoSpaceError;
