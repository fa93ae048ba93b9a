import * as path from 'node:path';
import { InvalidArgumentError } from '@berth/api';

/**
 * Turns a daemon address into a grpc-js target. containerd addresses are unix socket
 * paths; the `unix://` prefix is optional, and a relative path is taken from the
 * working directory so the target does not depend on grpc's own resolution rules.
 */
export function grpcTarget(address: string): string {
  if (typeof address !== 'string' || address.trim() === '') {
    throw new InvalidArgumentError('address must not be empty');
  }
  let socket = address;
  if (socket.startsWith('unix://')) socket = socket.slice('unix://'.length);
  else if (socket.startsWith('unix:')) socket = socket.slice('unix:'.length);
  else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(socket)) {
    throw new InvalidArgumentError(`address "${address}": only unix sockets are supported`);
  }
  if (socket === '') throw new InvalidArgumentError(`address "${address}": missing socket path`);
  return `unix://${path.resolve(socket)}`;
}

/** The socket path an address names (for messages). */
export function socketPath(address: string): string {
  return grpcTarget(address).slice('unix://'.length);
}
