import { closeSync } from 'node:fs';
import { isIP, Socket } from 'node:net';
import { InvalidArgumentError, NotFoundError } from '@berth/api';
import { native } from './native';

/**
 * A TCP socket (non-blocking, close-on-exec fd) that belongs to the network namespace at
 * `netnsPath`: the calling thread enters the namespace, makes the socket and comes back, all
 * synchronously. NotFound when the file does not exist, InvalidArgument when it is not a network
 * namespace; the process aborts if the thread cannot return to its own namespace.
 */
export function tcpSocketInNetns(netnsPath: string, family: 4 | 6 = 4): number {
  try {
    return native().tcpSocketInNetns(netnsPath, family);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' && err.path === netnsPath)
      throw new NotFoundError(`network namespace ${netnsPath}: not found`, { cause: err });
    if (err.code === 'EINVAL' && err.syscall === 'setns')
      throw new InvalidArgumentError(`${netnsPath} is not a network namespace`, { cause: err });
    throw err;
  }
}

export interface ConnectInNetnsOptions {
  /** An IP address inside the namespace; default 127.0.0.1. */
  host?: string;
  /** As net.Socket's: the socket stays writable after the peer's FIN. */
  allowHalfOpen?: boolean;
}

/**
 * A net.Socket connected to `host:port` inside the network namespace at `netnsPath` (a pod's),
 * without a process per connection. The connect is waited for on the event loop; a refused or
 * failed one rejects with Node's connect error (`connect ECONNREFUSED 127.0.0.1:80`).
 */
export async function connectInNetns(
  netnsPath: string,
  port: number,
  options: ConnectInNetnsOptions = {},
): Promise<Socket> {
  const host = options.host ?? '127.0.0.1';
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new InvalidArgumentError(`invalid port ${port}: must be an integer from 1 to 65535`);
  const family = isIP(host);
  if (family === 0) throw new InvalidArgumentError(`invalid host "${host}": must be an IP address`);
  const fd = tcpSocketInNetns(netnsPath, family as 4 | 6);
  try {
    await native().connectTcp(fd, host, port);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  // The socket now owns the fd (closed when it is destroyed).
  return new Socket({ fd, readable: true, writable: true, allowHalfOpen: options.allowHalfOpen === true });
}
