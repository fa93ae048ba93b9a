import { decodeAny, encodeAny, type wire } from '@berth/api';
import {
  type Credentials,
  type CredentialsFunc,
  configureHosts,
  RegistryClient,
  type RegistryHosts,
} from '@berth/images';
import type { Stream } from '../streaming/manager';

/**
 * Credentials asked of the client over its auth stream, as containerd 2's credCallback: one
 * AuthRequest {host, reference} at a time, answered by an AuthResponse. A client that closed
 * the stream, or answers NONE, has no credentials for the host.
 */
export function streamCredentials(stream: Stream, reference: string): CredentialsFunc {
  let chain: Promise<unknown> = Promise.resolve();
  return (host) => {
    const ask = chain.then(async (): Promise<Credentials | undefined> => {
      await stream.send(
        encodeAny('containerd.types.transfer.AuthRequest', { host, reference, wwwauthenticate: [] }),
      );
      const msg = await stream.recv();
      if (!msg) return undefined;
      const r = decodeAny<wire.transferTypes.AuthResponse>(msg);
      switch (r.authType) {
        case 'CREDENTIALS':
          return { username: r.username, password: r.secret };
        case 'REFRESH':
          return { identityToken: r.secret };
        default:
          return undefined;
      }
    });
    chain = ask.catch(() => undefined);
    return ask;
  };
}

export interface ResolverDeps {
  /** The client's auth stream, when it named one. */
  authStream?: Stream;
  reference: string;
}

/** A registry client configured as the request's RegistryResolver says. */
export function registryClient(
  res: wire.transferTypes.RegistryResolver | null | undefined,
  deps: ResolverDeps,
): RegistryClient {
  const base = configureHosts({
    hostsDir: res?.hostDir || undefined,
    plainHttp: res?.defaultScheme === 'http',
  });
  const extra = Object.entries(res?.headers ?? {});
  const hosts: RegistryHosts =
    extra.length === 0
      ? base
      : async (domain) =>
          (await base(domain)).map((h) => {
            const header = { ...h.header };
            for (const [k, v] of extra) header[k] = [v];
            return { ...h, header };
          });
  return new RegistryClient({
    hosts,
    credentials: deps.authStream ? streamCredentials(deps.authStream, deps.reference) : undefined,
  });
}
