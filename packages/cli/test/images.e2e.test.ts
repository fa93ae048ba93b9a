/**
 * `berth images` as a new user meets it, against Debian's docker-registry on 127.0.0.1:
 * pulls through berthd's Transfer service (anonymous, htpasswd basic auth, a token
 * server, a hosts.toml mirror, a multi-platform index), push, export and import, check and
 * usage, `images rm` then `gc`; and the same pull against containerd 1.6, which has no
 * Transfer service, done by the CLI through containerd's own services.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Client, connect } from '@berth/client';
import { chainIds } from '@berth/images';
import {
  type BuiltImage,
  berth,
  buildImage,
  containerdInstalled,
  ctr,
  type Daemon,
  file,
  makeTempDir,
  pushToRegistry,
  type Registry,
  type RunResult,
  registryInstalled,
  removeDir,
  startBerthd,
  startContainerd,
  startRegistry,
} from '@berth/testkit';

const ready = registryInstalled() && process.getuid?.() === 0;
const suite = ready ? describe : describe.skip;
if (!ready) it.skip('needs docker-registry and root', () => {});

const ARM = { os: 'linux', architecture: 'arm64', variant: 'v8' };

suite('berth images against berthd', () => {
  let registry: Registry;
  let basic: Registry;
  let token: Registry;
  let daemon: Daemon;
  let client: Client;
  let image: BuiltImage;
  let tmp: string;
  let ns: string;

  beforeAll(async () => {
    tmp = makeTempDir('berth-images-e2e-');
    [registry, basic, token, daemon] = await Promise.all([
      startRegistry(),
      startRegistry({ htpasswd: { bob: 'hunter2' } }),
      startRegistry({ tokenAuth: { users: { carol: 'c4rol' }, anonymousPull: false } }),
      startBerthd(),
    ]);
    image = buildImage({
      layers: ['busybox', [file('etc/motd', 'pulled by berth\n'), file('srv/blob', randomBytes(300_000))]],
      extraPlatforms: [ARM],
    });
    await Promise.all([
      pushToRegistry(registry.url, 'e2e/app', 'v1', image),
      pushToRegistry(basic.url, 'e2e/app', 'v1', image, { username: 'bob', password: 'hunter2' }),
      pushToRegistry(token.url, 'e2e/app', 'v1', image, { username: 'carol', password: 'c4rol' }),
    ]);
    client = connect(daemon.address);
  }, 120_000);

  afterAll(async () => {
    client?.close();
    await Promise.all([daemon?.dispose(), registry?.stop(), basic?.stop(), token?.stop()]);
    if (tmp) removeDir(tmp);
  });

  beforeEach(() => {
    ns = `img-${randomBytes(4).toString('hex')}`;
  });

  const b = (args: string[]): Promise<RunResult> => berth(daemon.address, ['-n', ns, ...args]);
  const ok = async (args: string[]): Promise<string> => {
    const r = await b(args);
    if (r.code !== 0)
      throw new Error(`berth ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${daemon.logs().slice(-2000)}`);
    expect(r.stderr).toBe('');
    return r.stdout;
  };
  const fails = async (args: string[]): Promise<string> => {
    const r = await b(args);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^berth: /m);
    return r.stderr;
  };
  const ctx = () => ({ namespace: ns });
  const topChain = () => chainIds(image.layers.map((l) => l.diffId)).at(-1)!;
  const arm = () => image.manifests.find((m) => m.platform?.architecture === 'arm64')!;

  it('pulls anonymously, unpacks linux/amd64 of the index, one line per change of state', async () => {
    const ref = `${registry.host}/e2e/app:v1`;
    const out = await ok(['images', 'pull', ref]);
    expect(out).toMatch(new RegExp(`^pulled ${ref.replace(/[.]/g, '\\.')} \\(${image.target.digest}, `, 'm'));
    for (const l of image.layers) {
      const short = l.desc.digest.slice(0, 'sha256:'.length + 12);
      expect(out).toContain(`layer ${short}: done`);
      expect(out).toContain(`layer ${short}: unpacked`);
    }
    expect(out).not.toContain('\x1b['); // not a terminal: no cursor movement
    expect((await client.images.get(ctx(), ref)).target.digest).toBe(image.target.digest);
    expect((await client.snapshots('overlayfs').stat(ctx(), topChain())).kind).toBe('committed');
    // Only this host's platform came: the arm64 manifest is not in the store.
    await expect(client.content.info(ctx(), arm().digest)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    const check = await ok(['images', 'check']);
    expect(check).toMatch(/complete \(3\/3\) .* true/);
    const usage = await ok(['images', 'usage', ref]);
    expect(usage).toContain(topChain());
    expect(usage).toMatch(/^total\s+\d/m);
  });

  it('pulls another platform of the index without unpacking it', async () => {
    const ref = `${registry.host}/e2e/app:v1`;
    await ok(['images', 'pull', '--platform', 'linux/arm64', '--skip-unpack', ref]);
    expect((await client.content.info(ctx(), arm().digest)).size).toBe(arm().size);
    await expect(client.content.info(ctx(), image.manifest.digest)).rejects.toMatchObject({
      code: 'ERR_NOT_FOUND',
    });
  });

  it('uses --user for a registry behind htpasswd basic auth', async () => {
    const ref = `${basic.host}/e2e/app:v1`;
    expect(await fails(['images', 'pull', ref])).toMatch(/401|unauthorized|no credentials/i);
    expect(await fails(['images', 'pull', '--user', 'bob:wrong', ref])).toMatch(/401|unauthorized/i);
    await expect(client.images.get(ctx(), ref)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    await ok(['images', 'pull', '--user', 'bob:hunter2', ref]);
    expect(await ok(['images', 'check', '-q'])).toBe(`${ref}\n`);
  });

  it('exchanges --user for a token at the token server the registry names', async () => {
    const ref = `${token.host}/e2e/app:v1`;
    expect(await fails(['images', 'pull', ref])).toMatch(/401|unauthorized|denied|credentials/i);
    const before = token.tokenServer!.requests.length;
    await ok(['images', 'pull', '--user', 'carol:c4rol', ref]);
    const asked = token.tokenServer!.requests.slice(before);
    expect(asked.some((r) => r.account === 'carol' && r.status === 200)).toBe(true);
    expect(asked.flatMap((r) => r.scopes)).toContain('repository:e2e/app:pull');
    expect(await ok(['images', 'check', '-q'])).toBe(`${ref}\n`);
  });

  it('follows a hosts.toml mirror given with --hosts-dir', async () => {
    const hostsDir = join(tmp, `hosts-${ns}`);
    mkdirSync(join(hostsDir, 'registry.invalid'), { recursive: true });
    writeFileSync(
      join(hostsDir, 'registry.invalid', 'hosts.toml'),
      `server = "https://registry.invalid"\n\n[host."http://${registry.host}"]\n  capabilities = ["pull", "resolve"]\n`,
    );
    const ref = 'registry.invalid/e2e/app:v1';
    await fails(['images', 'pull', ref]);
    await ok(['images', 'pull', '--hosts-dir', hostsDir, ref]);
    expect((await client.images.get(ctx(), ref)).target.digest).toBe(image.target.digest);
  });

  it('pushes, exports and imports, the daemon doing the work', async () => {
    const ref = `${registry.host}/e2e/app:v1`;
    const pushed = `${registry.host}/e2e/copy:${ns}`;
    await ok(['images', 'pull', ref]);
    await ok(['images', 'tag', ref, pushed]);
    const out = await ok(['images', 'push', '--platform', 'linux/amd64', pushed]);
    expect(out).toContain(`pushed ${pushed} (${image.manifest.digest}`);
    const res = await fetch(`${registry.url}/v2/e2e/copy/manifests/${ns}`, {
      headers: { accept: image.manifest.mediaType },
    });
    expect(res.headers.get('docker-content-digest')).toBe(image.manifest.digest);

    const archive = join(tmp, `${ns}.tar`);
    await ok(['images', 'export', archive, ref]);
    expect(statSync(archive).size).toBeGreaterThan(300_000);
    await ok(['images', 'rm', '--sync', ref, pushed]);
    await expect(client.content.info(ctx(), image.layers[1]!.desc.digest)).rejects.toMatchObject({
      code: 'ERR_NOT_FOUND',
    });
    expect(await ok(['images', 'import', archive])).toMatch(new RegExp(`unpacked\\nimported ${ref}\\n$`));
    expect(await ok(['images', 'check'])).toMatch(/complete \(3\/3\) .* true/);
    expect(await fails(['images', 'export', join(tmp, 'missing.tar'), 'no/such:image'])).toContain(
      'not found',
    );
    expect(() => statSync(join(tmp, 'missing.tar'))).toThrow();
  });

  it('frees content and snapshots with images rm then gc', async () => {
    const ref = `${registry.host}/e2e/app:v1`;
    await ok(['images', 'pull', ref]);
    expect((await client.content.list(ctx())).length).toBe(5);
    await ok(['images', 'rm', ref]);
    const out = await ok(['gc', '-v']);
    expect(out).toMatch(/reclaimed|nothing to collect/);
    expect(await client.content.list(ctx())).toEqual([]);
    const keys: string[] = [];
    await client.snapshots('overlayfs').walk(ctx(), (i) => {
      keys.push(i.name);
    });
    expect(keys).toEqual([]);
  });

  it('reports what a collection removed, with the bytes reclaimed', async () => {
    // A lease keeps a pull's content; deleting it without sync leaves the work to `berth gc`
    // unless the daemon got there first, so the report is checked against what went.
    const data = randomBytes(200_000);
    const lease = await client.leases.create(ctx(), { id: `keep-${ns}` });
    const digest = `sha256:${require('node:crypto').createHash('sha256').update(data).digest('hex')}`;
    const w = await client.content.writer({ ...ctx(), lease: lease.id }, { ref: `gc-${ns}` });
    await w.write(data);
    await w.commit(data.length, digest);
    await client.leases.delete(ctx(), lease.id);
    const out = await ok(['--format', 'json', 'gc']);
    const report = JSON.parse(out) as {
      content: Array<{ digest: string; size: number }>;
      reclaimedBytes: number;
    };
    const mine = report.content.find((c) => c.digest === digest);
    if (mine) {
      expect(mine.size).toBe(data.length);
      expect(report.reclaimedBytes).toBeGreaterThanOrEqual(data.length);
    }
    await expect(client.content.info(ctx(), digest)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  });

  it('fails clearly for a bad reference, a missing tag and a bad --user', async () => {
    expect(await fails(['images', 'pull', 'UPPER/case:tag'])).toContain('UPPER/case');
    expect(await fails(['images', 'pull', `${registry.host}/e2e/app:missing`])).toContain('e2e/app:missing');
    const r = await b(['images', 'pull', '--user', 'nocolon', `${registry.host}/e2e/app:v1`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--user "nocolon"');
  });
});

const withContainerd = ready && containerdInstalled();
(withContainerd ? describe : describe.skip)(
  'berth images against containerd 1.6 (no Transfer service)',
  () => {
    let registry: Registry;
    let daemon: Daemon;
    let image: BuiltImage;
    const NS = 'berth-e2e';

    beforeAll(async () => {
      [registry, daemon] = await Promise.all([
        startRegistry({ htpasswd: { bob: 'hunter2' } }),
        startContainerd(),
      ]);
      image = buildImage({ layers: ['busybox', [file('etc/motd', 'fallback\n')]], extraPlatforms: [ARM] });
      await pushToRegistry(registry.url, 'e2e/app', 'v1', image, { username: 'bob', password: 'hunter2' });
    }, 120_000);

    afterAll(async () => {
      await Promise.all([daemon?.dispose(), registry?.stop()]);
    });

    it('pulls and unpacks through the daemon services, as ctr would', async () => {
      const ref = `${registry.host}/e2e/app:v1`;
      const r = await berth(daemon.address, ['-n', NS, 'images', 'pull', '--user', 'bob:hunter2', ref]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`pulled ${ref}`);
      const check = await ctr(daemon.address, ['-n', NS, 'images', 'check']);
      expect(check.stdout).toMatch(/complete \(3\/3\) .* true/);
      const chain = chainIds(image.layers.map((l) => l.diffId)).at(-1)!;
      expect((await ctr(daemon.address, ['-n', NS, 'snapshots', 'ls'])).stdout).toContain(chain);
    });
  },
);
