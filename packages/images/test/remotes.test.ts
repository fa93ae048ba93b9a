import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  appendDistributionSource,
  chainIds,
  childrenLabels,
  configureHosts,
  distributionSourceKey,
  dockerConfigCredentials,
  hostDirCandidates,
  ingestRef,
  isLocalhost,
  MediaTypes,
  parseChallenges,
  parseHostsToml,
  parseImageConfig,
  parseIndex,
  parseManifest,
  parseRetryAfter,
  staticCredentials,
} from '@berth/images';
import { sha256 } from './image-fixtures';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-remotes-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('WWW-Authenticate', () => {
  it('parses bearer and basic challenges', () => {
    expect(
      parseChallenges(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"',
      ),
    ).toEqual([
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.example/token',
          service: 'registry.example',
          scope: 'repository:a/b:pull',
        },
      },
    ]);
    expect(parseChallenges(['Basic realm="x \\"y\\""'])).toEqual([
      { scheme: 'basic', params: { realm: 'x "y"' } },
    ]);
    expect(parseChallenges('Bearer realm=unquoted, error="invalid_token"')).toEqual([
      { scheme: 'bearer', params: { realm: 'unquoted', error: 'invalid_token' } },
    ]);
    expect(parseChallenges(undefined)).toEqual([]);
  });

  it('reads Retry-After as seconds or a date', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });
});

describe('hosts.toml', () => {
  it('lists mirrors in file order, then the server, with capabilities, TLS and headers', () => {
    const hosts = parseHostsToml(
      `
server = "https://registry.example.com"

[host."https://mirror-b.example"]
  capabilities = ["pull", "resolve"]
  ca = "certs/ca.pem"
  skip_verify = true
  [host."https://mirror-b.example".header]
    x-custom = "1"
    x-list = ["a", "b"]

[host."http://10.0.0.1:5000/prefix"]
  capabilities = ["pull"]

[host."mirror-a.example:5000"]
  plain_http = true
  override_path = true
`,
      '/etc/berth/certs.d/registry.example.com',
    );
    expect(hosts).toEqual([
      {
        scheme: 'https',
        host: 'mirror-b.example',
        path: '/v2',
        capabilities: ['pull', 'resolve'],
        header: { 'x-custom': ['1'], 'x-list': ['a', 'b'] },
        caFiles: ['/etc/berth/certs.d/registry.example.com/certs/ca.pem'],
        skipVerify: true,
      },
      { scheme: 'http', host: '10.0.0.1:5000', path: '/prefix/v2', capabilities: ['pull'], header: {} },
      {
        scheme: 'http',
        host: 'mirror-a.example:5000',
        path: '',
        capabilities: ['pull', 'resolve', 'push'],
        header: {},
      },
      {
        scheme: 'https',
        host: 'registry.example.com',
        path: '/v2',
        capabilities: ['pull', 'resolve', 'push'],
        header: {},
      },
    ]);
  });

  it('refuses what containerd refuses, naming the file', () => {
    expect(() => parseHostsToml('[host."x"]\ncapabilities = ["fly"]', '/d', '/d/hosts.toml')).toThrow(
      '/d/hosts.toml: unknown capability "fly"',
    );
    expect(() => parseHostsToml('server = [', '/d', '/d/hosts.toml')).toThrow(
      /\/d\/hosts.toml: failed to parse TOML/,
    );
    expect(() => parseHostsToml('ca = 3', '/d', 'f')).toThrow(/invalid type for "ca"/);
  });

  it('finds host directories as containerd (host_port_, host, _default)', () => {
    expect(hostDirCandidates('/c', 'r.io:5000')).toEqual(['/c/r.io_5000_', '/c/r.io:5000', '/c/_default']);
    expect(hostDirCandidates('/c', 'r.io')).toEqual(['/c/r.io', '/c/_default']);
  });

  it('defaults: docker.io is registry-1, localhost plain http, others https unless plainHttp', async () => {
    const hosts = configureHosts();
    expect((await hosts('docker.io')).map((h) => `${h.scheme}://${h.host}${h.path}`)).toEqual([
      'https://registry-1.docker.io/v2',
    ]);
    expect((await hosts('localhost:5000'))[0]!.scheme).toBe('http');
    expect((await hosts('127.0.0.1:5000'))[0]!.scheme).toBe('http');
    expect((await hosts('[::1]:5000'))[0]!.scheme).toBe('http');
    expect((await hosts('example.com'))[0]!.scheme).toBe('https');
    expect((await configureHosts({ plainHttp: true })('example.com'))[0]!.scheme).toBe('http');
    expect(isLocalhost('localhost')).toBe(true);
    expect(isLocalhost('127.1.2.3:80')).toBe(true);
    expect(isLocalhost('10.0.0.1')).toBe(false);
  });

  it('reads <dir>/<host>/hosts.toml and the _default fallback, CA files included', async () => {
    await mkdir(join(dir, 'r.io_5000_'), { recursive: true });
    await writeFile(join(dir, 'r.io_5000_', 'ca.pem'), 'not really a cert');
    await writeFile(
      join(dir, 'r.io_5000_', 'hosts.toml'),
      '[host."http://127.0.0.1:9"]\ncapabilities = ["pull", "resolve"]\n[host."https://m.example"]\nca = "ca.pem"\n',
    );
    await mkdir(join(dir, '_default'));
    await writeFile(join(dir, '_default', 'hosts.toml'), 'server = "https://fallback.example"\n');
    const hosts = configureHosts({ hostsDir: dir });
    const r = await hosts('r.io:5000');
    expect(r.map((h) => `${h.scheme}://${h.host}`)).toEqual([
      'http://127.0.0.1:9',
      'https://m.example',
      'https://r.io:5000',
    ]);
    expect(r[1]!.tls.ca?.[0]?.toString()).toBe('not really a cert');
    expect((await hosts('other.io')).map((h) => h.host)).toEqual(['fallback.example']);

    await writeFile(
      join(dir, 'r.io_5000_', 'hosts.toml'),
      '[host."https://m.example"]\nca = "missing.pem"\n',
    );
    await expect(configureHosts({ hostsDir: dir })('r.io:5000')).rejects.toThrow(
      /unable to read CA cert ".*missing.pem"/,
    );
  });
});

describe('credentials', () => {
  it('reads auths from a docker config: base64 auth, username/password, identity token, Hub key', async () => {
    const path = join(dir, 'config.json');
    await writeFile(
      path,
      JSON.stringify({
        auths: {
          'r.io:5000': { auth: Buffer.from('alice:s3:cret').toString('base64') },
          'https://other.io/v1/': { username: 'bob', password: 'pw' },
          'https://index.docker.io/v1/': { auth: Buffer.from('hub:pw').toString('base64') },
          'tok.io': { identitytoken: 'refresh' },
          'empty.io': {},
        },
      }),
    );
    const creds = dockerConfigCredentials(path);
    expect(await creds('r.io:5000')).toEqual({ username: 'alice', password: 's3:cret' });
    expect(await creds('other.io')).toEqual({ username: 'bob', password: 'pw' });
    expect(await creds('registry-1.docker.io')).toEqual({ username: 'hub', password: 'pw' });
    expect(await creds('tok.io')).toEqual({ identityToken: 'refresh' });
    expect(await creds('empty.io')).toBeUndefined();
    expect(await creds('nowhere.io')).toBeUndefined();
    expect(await dockerConfigCredentials(join(dir, 'missing.json'))('r.io')).toBeUndefined();
    await writeFile(path, '{oops');
    await expect(dockerConfigCredentials(path)('r.io')).rejects.toThrow(
      /docker config .*config.json: invalid JSON/,
    );
    expect(await staticCredentials('u:p:q')('any')).toEqual({ username: 'u', password: 'p:q' });
  });
});

describe('image metadata', () => {
  const d = (n: number) => `sha256:${String(n).repeat(64)}`;

  it('labels children as containerd.ChildGCLabels', () => {
    expect(
      childrenLabels([
        { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d(1) },
        { mediaType: MediaTypes.ociLayerGzip, digest: d(2) },
        { mediaType: MediaTypes.dockerLayerGzip, digest: d(3) },
      ]),
    ).toEqual({
      'containerd.io/gc.ref.content.config': d(1),
      'containerd.io/gc.ref.content.l.0': d(2),
      'containerd.io/gc.ref.content.l.1': d(3),
    });
    expect(
      childrenLabels([
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d(1) },
        { mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest: d(2) },
        { mediaType: 'application/vnd.oci.image.index.v1+json', digest: d(3) },
      ]),
    ).toEqual({
      'containerd.io/gc.ref.content.m.0': d(1),
      'containerd.io/gc.ref.content.m.1': d(2),
      'containerd.io/gc.ref.content.0': d(3),
    });
  });

  it('keeps distribution sources sorted and unique, keyed by host without port', () => {
    expect(distributionSourceKey('127.0.0.1:5000')).toBe('containerd.io/distribution.source.127.0.0.1');
    expect(distributionSourceKey('docker.io')).toBe('containerd.io/distribution.source.docker.io');
    expect(appendDistributionSource(undefined, 'b/c')).toBe('b/c');
    expect(appendDistributionSource('b/c', 'a')).toBe('a,b/c');
    expect(appendDistributionSource('a,b/c', 'b/c')).toBe('a,b/c');
  });

  it('computes chain IDs as the OCI spec', () => {
    const a = d(1);
    const b = d(2);
    expect(chainIds([a, b])).toEqual([a, sha256(`${a} ${b}`)]);
    expect(chainIds([])).toEqual([]);
  });

  it('names ingests deterministically per digest', () => {
    expect(ingestRef({ mediaType: MediaTypes.ociLayerGzip, digest: d(1) })).toBe(`layer-${d(1)}`);
    expect(ingestRef({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: d(1) })).toBe(
      `index-${d(1)}`,
    );
    expect(ingestRef({ mediaType: 'application/vnd.docker.container.image.v1+json', digest: d(1) })).toBe(
      `config-${d(1)}`,
    );
  });

  it('refuses malformed manifests, indexes and configs naming the digest and the fault', () => {
    const dg = d(7);
    expect(() => parseManifest(Buffer.from('nope'), dg)).toThrow(`manifest ${dg}: malformed: invalid JSON`);
    expect(() => parseManifest(Buffer.from('[]'), dg)).toThrow('not a JSON object');
    expect(() => parseManifest(Buffer.from('{"layers":[]}'), dg)).toThrow('no config');
    expect(() => parseManifest(Buffer.from('{"schemaVersion":1}'), dg)).toThrow(/schema 1 is not supported/);
    expect(() =>
      parseManifest(
        Buffer.from(JSON.stringify({ config: { mediaType: 'x', digest: 'sha256:1', size: 1 }, layers: [] })),
        dg,
      ),
    ).toThrow(/config: invalid digest "sha256:1"/);
    expect(() =>
      parseManifest(
        Buffer.from(JSON.stringify({ config: { mediaType: 'x', digest: d(1), size: -1 }, layers: [] })),
        dg,
      ),
    ).toThrow(/invalid size -1/);
    expect(() => parseIndex(Buffer.from('{"manifests":{}}'), dg)).toThrow('manifests is not an array');
    expect(() => parseImageConfig(Buffer.from('{"rootfs":{}}'), dg)).toThrow('rootfs.diff_ids is missing');
    expect(() => parseImageConfig(Buffer.from('{"rootfs":{"diff_ids":["x"]}}'), dg)).toThrow(/diff_ids\[0\]/);
  });
});
