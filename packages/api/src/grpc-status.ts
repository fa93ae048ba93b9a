import {
  AbortedError,
  AlreadyExistsError,
  type BerthError,
  CanceledError,
  DeadlineExceededError,
  type ErrorCode,
  FailedPreconditionError,
  InvalidArgumentError,
  isBerthError,
  NotFoundError,
  NotImplementedError,
  OutOfRangeError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnavailableError,
  UnknownError,
} from './errors';

/** gRPC status codes (numbers fixed by the gRPC spec). */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

const toCode: Record<ErrorCode, number> = {
  ERR_NOT_FOUND: GrpcCode.NOT_FOUND,
  ERR_ALREADY_EXISTS: GrpcCode.ALREADY_EXISTS,
  ERR_INVALID_ARGUMENT: GrpcCode.INVALID_ARGUMENT,
  ERR_FAILED_PRECONDITION: GrpcCode.FAILED_PRECONDITION,
  ERR_UNAVAILABLE: GrpcCode.UNAVAILABLE,
  ERR_NOT_IMPLEMENTED: GrpcCode.UNIMPLEMENTED,
  ERR_ABORTED: GrpcCode.ABORTED,
  ERR_CANCELED: GrpcCode.CANCELLED,
  ERR_DEADLINE_EXCEEDED: GrpcCode.DEADLINE_EXCEEDED,
  ERR_RESOURCE_EXHAUSTED: GrpcCode.RESOURCE_EXHAUSTED,
  ERR_PERMISSION_DENIED: GrpcCode.PERMISSION_DENIED,
  ERR_OUT_OF_RANGE: GrpcCode.OUT_OF_RANGE,
  ERR_UNKNOWN: GrpcCode.UNKNOWN,
};

/** A gRPC status as both grpc-js and ttrpc carry it. */
export interface GrpcStatus {
  code: number;
  details: string;
}

/** Server edge: any thrown value becomes a status; unknown errors are INTERNAL-free UNKNOWN. */
export function toGrpcStatus(err: unknown): GrpcStatus {
  if (isBerthError(err)) return { code: toCode[err.code], details: err.message };
  const message = err instanceof Error ? err.message : String(err);
  return { code: GrpcCode.UNKNOWN, details: message };
}

/** Client edge: a status received from a server becomes the matching typed error. */
export function fromGrpcStatus(status: { code?: number; details?: string; message?: string }): BerthError {
  const msg = status.details ?? status.message ?? 'unknown error';
  switch (status.code) {
    case GrpcCode.NOT_FOUND:
      return new NotFoundError(msg);
    case GrpcCode.ALREADY_EXISTS:
      return new AlreadyExistsError(msg);
    case GrpcCode.INVALID_ARGUMENT:
      return new InvalidArgumentError(msg);
    case GrpcCode.FAILED_PRECONDITION:
      return new FailedPreconditionError(msg);
    case GrpcCode.UNAVAILABLE:
      return new UnavailableError(msg);
    case GrpcCode.UNIMPLEMENTED:
      return new NotImplementedError(msg);
    case GrpcCode.ABORTED:
      return new AbortedError(msg);
    case GrpcCode.CANCELLED:
      return new CanceledError(msg);
    case GrpcCode.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(msg);
    case GrpcCode.RESOURCE_EXHAUSTED:
      return new ResourceExhaustedError(msg);
    case GrpcCode.PERMISSION_DENIED:
      return new PermissionDeniedError(msg);
    case GrpcCode.OUT_OF_RANGE:
      return new OutOfRangeError(msg);
    default:
      return new UnknownError(msg);
  }
}
