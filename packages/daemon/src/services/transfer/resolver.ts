import { decodeAny, encodeAny } from '@berth/api';
import {
  type Credentials,
  type CredentialsFunc,
  configureHosts,
  RegistryClient,
  type RegistryHosts,
} from '@berth/images';
import type { Stream } from '../streaming/manager';

/** containerd.types.transfer.RegistryResolver in the loader's JS shape. */
export interface RegistryResolverMsg {
  authStream: string;
  headers: Record<string, string>;
  hostDir: string;
  defaultScheme: string;
}

interface AuthResponseMsg {
  authType: 'NONE' | 'CREDENTIALS' | 'REFRESH' | 'HEADER';
  secret: string;
  username: string;
}

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
      const r = decodeAny<AuthResponseMsg>(msg);
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
  res: RegistryResolverMsg | null | undefined,
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
