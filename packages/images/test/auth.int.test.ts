import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContentStore, Context } from '@berth/api';
import { openLocalStore } from '@berth/content';
import { dockerConfigCredentials, pull, RegistryClient, staticCredentials } from '@berth/images';
import { type Registry, startFaultyProxy, startRegistry } from '@berth/testkit';
import { type BuiltImage, buildImage, file, pushImage } from './image-fixtures';

const ctx: Context = { namespace: 'default' };
let work: string;
let content: ContentStore;
let img: BuiltImage;

beforeAll(() => {
  img = buildImage({ layers: [[file('a', 'auth\n')], [file('b', 'more\n')]] });
});

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'berth-auth-'));
  content = await openLocalStore(join(work, 'content'));
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

const basic = (u: string, p: string) => ({
  authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`,
});

describe('basic auth (htpasswd)', () => {
  let registry: Registry;
  beforeAll(async () => {
    registry = await startRegistry({ htpasswd: { alice: 'wonderland' } });
    await pushImage(registry.url, 'private/app', 'v1', img, basic('alice', 'wonderland'));
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('pulls with credentials', async () => {
    const client = new RegistryClient({ credentials: staticCredentials('alice:wonderland') });
    const res = await pull(ctx, `${registry.host}/private/app:v1`, { content, client });
    expect(res.image.target.digest).toBe(img.manifest.digest);
  });

  it('pulls with credentials from a docker config.json', async () => {
    const path = join(work, 'config.json');
    await writeFile(
      path,
      JSON.stringify({
        auths: { [registry.host]: { auth: Buffer.from('alice:wonderland').toString('base64') } },
      }),
    );
    const client = new RegistryClient({ credentials: dockerConfigCredentials(path) });
    await pull(ctx, `${registry.host}/private/app:v1`, { content, client });
    expect((await content.info(ctx, img.layers[1]!.desc.digest)).size).toBe(img.layers[1]!.desc.size);
  });

  it('refuses without or with wrong credentials, saying so', async () => {
    const anon = await pull(ctx, `${registry.host}/private/app:v1`, {
      content,
      client: new RegistryClient(),
    }).catch((e) => e);
    expect(anon.code).toBe('ERR_PERMISSION_DENIED');
    expect(anon.message).toMatch(/401 Unauthorized.*\(no credentials\)/);
    const wrong = await pull(ctx, `${registry.host}/private/app:v1`, {
      content,
      client: new RegistryClient({ credentials: staticCredentials('alice:nope') }),
    }).catch((e) => e);
    expect(wrong.code).toBe('ERR_PERMISSION_DENIED');
    expect(wrong.message).not.toMatch(/no credentials/);
  });
});

describe('bearer tokens', () => {
  let registry: Registry;
  beforeAll(async () => {
    registry = await startRegistry({ tokenAuth: { users: { bob: 'builder' }, anonymousPull: true } });
    const ts = registry.tokenServer!;
    const res = await fetch(`${ts.realm}?service=${ts.service}&scope=repository:tok/app:pull,push`, {
      headers: basic('bob', 'builder'),
    });
    const { token } = (await res.json()) as { token: string };
    await pushImage(registry.url, 'tok/app', 'v1', img, { authorization: `Bearer ${token}` });
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('pulls anonymously with a token for the repository scope, fetched once', async () => {
    const ts = registry.tokenServer!;
    ts.requests.length = 0;
    const res = await pull(ctx, `${registry.host}/tok/app:v1`, { content, client: new RegistryClient() });
    expect(res.image.target.digest).toBe(img.manifest.digest);
    expect(ts.requests).toEqual([{ service: ts.service, scopes: ['repository:tok/app:pull'], status: 200 }]);
  });

  it('fetches the token with basic credentials when it has them', async () => {
    const ts = registry.tokenServer!;
    ts.requests.length = 0;
    await pull(ctx, `${registry.host}/tok/app:v1`, {
      content,
      client: new RegistryClient({
        credentials: staticCredentials({ username: 'bob', password: 'builder' }),
      }),
    });
    expect(ts.requests.map((r) => [r.account, r.status])).toEqual([['bob', 200]]);
  });

  it('reports a token endpoint that refuses the credentials', async () => {
    const err = await pull(ctx, `${registry.host}/tok/app:v1`, {
      content,
      client: new RegistryClient({ credentials: staticCredentials('bob:wrong') }),
    }).catch((e) => e);
    expect(err.code).toBe('ERR_PERMISSION_DENIED');
    expect(err.message).toMatch(/authorization failed: token endpoint .*\/token answered 401 for user bob/);
  });
});

describe('bearer tokens without anonymous access', () => {
  let registry: Registry;
  beforeAll(async () => {
    registry = await startRegistry({ tokenAuth: { users: { bob: 'builder' }, anonymousPull: false } });
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('fails anonymous pulls with the reason', async () => {
    const err = await pull(ctx, `${registry.host}/tok/app:v1`, {
      content,
      client: new RegistryClient(),
    }).catch((e) => e);
    expect(err.code).toBe('ERR_PERMISSION_DENIED');
    expect(err.message).toMatch(/answered 401 \(no credentials\)/);
  });
});

describe('hosts.toml mirrors', () => {
  let registry: Registry;
  beforeAll(async () => {
    registry = await startRegistry();
    await pushImage(registry.url, 'app', 'v1', img);
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('pulls a name of another registry through the mirror, with the configured headers', async () => {
    const proxy = await startFaultyProxy(registry);
    try {
      const hostsDir = join(work, 'certs.d');
      await mkdir(join(hostsDir, 'registry.invalid'), { recursive: true });
      await writeFile(
        join(hostsDir, 'registry.invalid', 'hosts.toml'),
        [
          'server = "https://registry.invalid"',
          `[host."http://${proxy.host}"]`,
          '  capabilities = ["pull", "resolve"]',
          `  [host."http://${proxy.host}".header]`,
          '    x-berth-test = "mirror"',
          '',
        ].join('\n'),
      );
      const res = await pull(ctx, 'registry.invalid/app:v1', {
        content,
        client: new RegistryClient({ hostsDir }),
      });
      expect(res.image.name).toBe('registry.invalid/app:v1');
      expect(res.image.target.digest).toBe(img.manifest.digest);
      expect(proxy.requests.length).toBeGreaterThan(0);
      for (const r of proxy.requests) {
        expect(r.path).toContain('ns=registry.invalid');
        expect(r.headers['x-berth-test']).toBe('mirror');
      }
      const labels = (await content.info(ctx, img.manifest.digest)).labels;
      expect(labels['containerd.io/distribution.source.registry.invalid']).toBe('app');

      // A mirror without the image: the server is tried next, and its failure is reported.
      proxy.addFault({ path: '/', fault: { kind: 'status', status: 404 } });
      const err = await pull(ctx, 'registry.invalid/app:v1', {
        content,
        client: new RegistryClient({ hostsDir, retries: 0, requestTimeoutMs: 5000 }),
      }).catch((e) => e);
      expect(err.message).toMatch(/registry\.invalid/);
    } finally {
      await proxy.close();
    }
  });
});
