import { readFileSync } from 'node:fs';
import { oci } from '@berth/client';

const ctx: oci.SpecContext = { namespace: 'default', id: 'c1' };

describe('defaultSpec', () => {
  const spec = oci.defaultSpec('ns1', 'web');

  it('gives the container its own pid, ipc, uts, mount and network namespaces, not user or cgroup', () => {
    expect(spec.linux?.namespaces?.map((n) => n.type)).toEqual(['pid', 'ipc', 'uts', 'mount', 'network']);
  });

  it('mounts proc, a tmpfs /dev with pts, shm and mqueue, a read-only sysfs and a tmpfs /run', () => {
    const byDest = Object.fromEntries((spec.mounts ?? []).map((m) => [m.destination, m]));
    expect(Object.keys(byDest)).toEqual([
      '/proc',
      '/dev',
      '/dev/pts',
      '/dev/shm',
      '/dev/mqueue',
      '/sys',
      '/run',
    ]);
    expect(byDest['/dev']).toMatchObject({ type: 'tmpfs', options: expect.arrayContaining(['mode=755']) });
    expect(byDest['/dev/pts']).toMatchObject({
      type: 'devpts',
      options: expect.arrayContaining(['newinstance', 'gid=5']),
    });
    expect(byDest['/dev/shm']?.options).toContain('mode=1777');
    expect(byDest['/sys']).toMatchObject({ type: 'sysfs', options: expect.arrayContaining(['ro']) });
  });

  it('runs as root in / with the default capabilities, 1024 open files and no new privileges', () => {
    const p = spec.process!;
    expect(p.user).toEqual({ uid: 0, gid: 0 });
    expect(p.cwd).toBe('/');
    expect(p.noNewPrivileges).toBe(true);
    expect(p.rlimits).toEqual([{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }]);
    expect(p.capabilities?.bounding).toHaveLength(14);
    expect(p.capabilities?.bounding).toContain('CAP_NET_BIND_SERVICE');
    expect(p.capabilities?.bounding).not.toContain('CAP_SYS_ADMIN');
    expect(p.capabilities?.effective).toEqual(p.capabilities?.bounding);
    expect(p.capabilities?.permitted).toEqual(p.capabilities?.bounding);
    expect(p.capabilities?.inheritable).toBeUndefined();
    expect(p.args).toBeUndefined();
    expect(p.terminal).toBeUndefined();
  });

  it('masks host information in /proc and /sys, and denies every device in the cgroup', () => {
    expect(spec.linux?.maskedPaths).toContain('/proc/kcore');
    expect(spec.linux?.maskedPaths).toContain('/sys/firmware');
    expect(spec.linux?.readonlyPaths).toContain('/proc/sysrq-trigger');
    expect(spec.linux?.resources?.devices).toEqual([{ allow: false, access: 'rwm' }]);
  });

  it('places the cgroup at /<namespace>/<id> and the root at ./rootfs', () => {
    expect(spec.linux?.cgroupsPath).toBe('/ns1/web');
    expect(spec.root).toEqual({ path: 'rootfs' });
    expect(oci.defaultSpec('default', '').linux?.cgroupsPath).toBe('/default');
  });

  it('hands out a fresh spec each time', () => {
    const a = oci.defaultSpec('default', 'x');
    a.process!.capabilities!.bounding!.push('CAP_SYS_ADMIN');
    a.mounts![0]!.options!.push('rw');
    const b = oci.defaultSpec('default', 'x');
    expect(b.process?.capabilities?.bounding).not.toContain('CAP_SYS_ADMIN');
    expect(b.mounts?.[0]?.options).toEqual(['nosuid', 'noexec', 'nodev']);
  });

  it('needs a valid namespace', () => {
    expect(() => oci.defaultSpec('', 'x')).toThrow(
      expect.objectContaining({ code: 'ERR_FAILED_PRECONDITION' }),
    );
    expect(() => oci.defaultSpec('bad/ns', 'x')).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
    );
  });

  it('serialises without empty fields and round-trips through specToAny', () => {
    const any = oci.specToAny(spec);
    expect(any.typeUrl).toBe('types.containerd.io/opencontainers/runtime-spec/1/Spec');
    const text = any.value.toString();
    expect(text).not.toMatch(/null|""|\[\]|\{\}/);
    expect(JSON.parse(text)).toEqual(spec);
  });
});

describe('replaceOrAppendEnv', () => {
  it.each<[string[], string[], string[]]>([
    [['PATH=/bin', 'A=1'], ['A=2'], ['PATH=/bin', 'A=2']],
    [['PATH=/bin'], ['B=1', 'C=x=y'], ['PATH=/bin', 'B=1', 'C=x=y']],
    [['PATH=/bin', 'A=1', 'B=2'], ['A'], ['PATH=/bin', 'B=2']],
    [['PATH=/bin'], ['NOPE'], ['PATH=/bin']],
    [['A=1'], ['A='], ['A=']],
    [[], ['X=1', 'X=2'], ['X=1', 'X=2']],
  ])('%j with %j gives %j', (defaults, overrides, expected) => {
    expect(oci.replaceOrAppendEnv(defaults, overrides)).toEqual(expected);
  });
});

describe('image config', () => {
  const gen = (...opts: oci.SpecOpt[]) =>
    oci.generateSpec({ ...ctx, rootfs: async () => undefined }, ...opts);

  it('runs entrypoint + cmd in the working dir with the image env', async () => {
    const s = await gen(
      oci.withImageConfig({
        Entrypoint: ['/bin/tini', '--'],
        Cmd: ['nginx', '-g', 'daemon off;'],
        Env: ['PATH=/usr/bin:/bin', 'NGINX_VERSION=1.25'],
        WorkingDir: '/srv',
      }),
    );
    expect(s.process?.args).toEqual(['/bin/tini', '--', 'nginx', '-g', 'daemon off;']);
    expect(s.process?.env).toEqual(['PATH=/usr/bin:/bin', 'NGINX_VERSION=1.25']);
    expect(s.process?.cwd).toBe('/srv');
    expect(s.process?.user).toEqual({ uid: 0, gid: 0, additionalGids: [0] });
  });

  it('replaces only cmd with args, keeping the entrypoint', async () => {
    const s = await gen(
      oci.withImageConfig({ Entrypoint: ['/entry'], Cmd: ['default'] }, { args: ['x', 'y'] }),
    );
    expect(s.process?.args).toEqual(['/entry', 'x', 'y']);
  });

  it('defaults to the standard PATH and / when the image says nothing, and has no args', async () => {
    const s = await gen(oci.withImageConfig({}));
    expect(s.process?.env).toEqual(oci.DEFAULT_UNIX_ENV);
    expect(s.process?.cwd).toBe('/');
    expect(s.process?.args).toBeUndefined();
  });

  it('lets variables set before it win over the image, in the image position', async () => {
    const s = await gen(
      oci.withEnv(['PATH=/opt/bin', 'EXTRA=1']),
      oci.withImageConfig({ Env: ['PATH=/bin', 'KEEP=1'] }),
    );
    expect(s.process?.env).toEqual(['PATH=/opt/bin', 'KEEP=1', 'EXTRA=1']);
  });

  it('unsets an image variable only when told after it (a bare name before it has nothing to remove)', async () => {
    const image = oci.withImageConfig({ Env: ['PATH=/bin', 'DROP=me'] });
    expect((await gen(oci.withEnv(['DROP']), image)).process?.env).toEqual(['PATH=/bin', 'DROP=me']);
    expect((await gen(image, oci.withEnv(['DROP']))).process?.env).toEqual(['PATH=/bin']);
  });

  it('is replaced wholesale by withProcessArgs (ctr run IMAGE ID CMD)', async () => {
    const s = await gen(
      oci.withImageConfig({ Entrypoint: ['/entry'], Cmd: ['c'] }),
      oci.withProcessArgs('/bin/echo', 'hi'),
    );
    expect(s.process?.args).toEqual(['/bin/echo', 'hi']);
  });

  it('refuses a spec without a linux section', async () => {
    const spec: oci.Spec = { ociVersion: oci.OCI_VERSION };
    await expect(oci.applyOpts(spec, ctx, [oci.withImageConfig({})])).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
  });

  it('parses an image config blob, OCI or Docker', () => {
    const blob = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Cmd: ['/bin/sh'], Env: ['A=1'], User: 'nobody', WorkingDir: '/w', ExposedPorts: {} },
        rootfs: { type: 'layers', diff_ids: [] },
      }),
    );
    expect(oci.parseImageConfig(blob)).toEqual({
      Cmd: ['/bin/sh'],
      Env: ['A=1'],
      User: 'nobody',
      WorkingDir: '/w',
    });
    expect(oci.parseImageConfig('{"architecture":"amd64"}')).toEqual({});
    expect(oci.parseImageConfig('{"config":{"Cmd":null}}')).toEqual({});
  });

  it.each([
    ['not json', /invalid image config/],
    ['[]', /not a JSON object/],
    ['{"config":[]}', /config is not an object/],
    ['{"config":{"Cmd":"sh"}}', /Cmd is not a list of strings/],
    ['{"config":{"Env":[1]}}', /Env is not a list of strings/],
    ['{"config":{"User":0}}', /User is not a string/],
  ])('refuses the image config %s', (text, message) => {
    expect(() => oci.parseImageConfig(text)).toThrow(message);
    expect(() => oci.parseImageConfig(text)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
    );
  });
});

describe('mounts', () => {
  it.each<[string, oci.Mount]>([
    [
      'type=bind,src=/host,dst=/in,options=rbind:ro',
      { destination: '/in', type: 'bind', source: '/host', options: ['rbind', 'ro'] },
    ],
    [
      'destination=/data,source=/srv/data,type=bind',
      { destination: '/data', type: 'bind', source: '/srv/data' },
    ],
    ['type=tmpfs,destination=/scratch', { destination: '/scratch', type: 'tmpfs' }],
    ['"src=/a,b",dst=/c', { destination: '/c', source: '/a,b' }],
    ['"src=/say ""hi""",dst=/c', { destination: '/c', source: '/say "hi"' }],
  ])('parses %s', (flag, mount) => {
    expect(oci.parseMountFlag(flag)).toEqual(mount);
  });

  it.each([
    ['', /empty/],
    ['type=bind,src=/a', /no destination/],
    ['type=bind,nonsense,dst=/a', /expected key=val, got "nonsense"/],
    ['mode=ro,dst=/a', /option "mode" not supported/],
    ['src=/a"b,dst=/c', /bare "/],
    ['"src=/a,dst=/c', /unterminated quote/],
  ])('refuses %j naming the problem', (flag, message) => {
    expect(() => oci.parseMountFlag(flag)).toThrow(message);
    expect(() => oci.parseMountFlag(flag)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });

  it('appends mounts after the defaults and removes by destination', async () => {
    const s = await oci.generateSpec(
      ctx,
      oci.withMounts([oci.parseMountFlag('type=bind,src=/tmp,dst=/mnt,options=rbind:rw')]),
      oci.withoutMounts('/run'),
    );
    const dests = s.mounts?.map((m) => m.destination);
    expect(dests?.at(-1)).toBe('/mnt');
    expect(dests).not.toContain('/run');
    expect(dests).toHaveLength(7);
  });

  it('withoutMounts compares cleaned paths', async () => {
    const s = await oci.generateSpec(ctx, oci.withMounts([{ destination: '/x/' }]), oci.withoutMounts('/x'));
    expect(s.mounts?.map((m) => m.destination)).not.toContain('/x/');
  });
});

describe('process and namespace options', () => {
  it('net-host leaves the network namespace and shares the host name resolution', async () => {
    const s = await oci.generateSpec(ctx, oci.withNetHost('box1'));
    expect(s.linux?.namespaces?.map((n) => n.type)).toEqual(['pid', 'ipc', 'uts', 'mount']);
    expect(s.mounts?.slice(-2)).toEqual([
      { destination: '/etc/hosts', type: 'bind', source: '/etc/hosts', options: ['rbind', 'ro'] },
      { destination: '/etc/resolv.conf', type: 'bind', source: '/etc/resolv.conf', options: ['rbind', 'ro'] },
    ]);
    expect(s.process?.env).toEqual(['HOSTNAME=box1']);
  });

  it('joins or replaces a namespace by type', async () => {
    const s = await oci.generateSpec(
      ctx,
      oci.withLinuxNamespace({ type: 'network', path: '/proc/1/ns/net' }),
      oci.withLinuxNamespace({ type: 'cgroup' }),
    );
    expect(s.linux?.namespaces).toContainEqual({ type: 'network', path: '/proc/1/ns/net' });
    expect(s.linux?.namespaces?.at(-1)).toEqual({ type: 'cgroup' });
    expect(s.linux?.namespaces).toHaveLength(6);
  });

  it('tty turns on the terminal and sets TERM', async () => {
    const s = await oci.generateSpec(ctx, oci.withEnv(['A=1']), oci.withTTY, oci.withTTYSize(80, 24));
    expect(s.process?.terminal).toBe(true);
    expect(s.process?.env).toEqual(['A=1', 'TERM=xterm']);
    expect(s.process?.consoleSize).toEqual({ width: 80, height: 24 });
  });

  it('sets hostname, cwd, a read-only root path, a cgroup and annotations', async () => {
    const s = await oci.generateSpec(
      ctx,
      oci.withHostname('web'),
      oci.withProcessCwd('/work'),
      oci.withRootfsPath('/srv/root'),
      oci.withRootfsReadonly,
      oci.withCgroup('/custom/c1'),
      oci.withAnnotations({ a: '1' }),
      oci.withAnnotations({}),
    );
    expect(s.hostname).toBe('web');
    expect(s.process?.cwd).toBe('/work');
    expect(s.root).toEqual({ path: '/srv/root', readonly: true });
    expect(s.linux?.cgroupsPath).toBe('/custom/c1');
    expect(s.annotations).toEqual({ a: '1' });
    expect((await oci.generateSpec(ctx, oci.withAnnotations({}))).annotations).toBeUndefined();
    expect((await oci.generateSpec(ctx, oci.withCgroup(''))).linux?.cgroupsPath).toBeUndefined();
  });

  it('withEnv with nothing leaves the env absent; unsetting everything removes it', async () => {
    expect((await oci.generateSpec(ctx, oci.withEnv([]))).process?.env).toBeUndefined();
    expect(
      (await oci.generateSpec(ctx, oci.withEnv(['A=1']), oci.withEnv(['A']))).process?.env,
    ).toBeUndefined();
  });

  it('adds and drops capabilities in all three sets, refusing names without CAP_', async () => {
    const s = await oci.generateSpec(
      ctx,
      oci.withAddedCapabilities(['CAP_SYS_ADMIN', 'CAP_CHOWN']),
      oci.withDroppedCapabilities(['CAP_NET_RAW']),
    );
    for (const set of [s.process?.capabilities?.bounding, s.process?.capabilities?.effective]) {
      expect(set).toContain('CAP_SYS_ADMIN');
      expect(set).not.toContain('CAP_NET_RAW');
      expect(set?.filter((c) => c === 'CAP_CHOWN')).toHaveLength(1);
    }
    expect(() => oci.withAddedCapabilities(['SYS_ADMIN'])).toThrow(
      /"SYS_ADMIN" must be given with its CAP_ prefix/,
    );
  });

  it('ctr run devices: the usual character devices after the deny-all rule', async () => {
    const s = await oci.generateSpec(ctx, oci.withDefaultUnixDevices);
    const devices = s.linux?.resources?.devices ?? [];
    expect(devices[0]).toEqual({ allow: false, access: 'rwm' });
    expect(devices).toContainEqual({ allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' });
    expect(devices).toContainEqual({ allow: true, type: 'c', major: 136, access: 'rwm' });
    expect(devices).toHaveLength(10);
  });

  it('no-new-privileges can be turned off and on', async () => {
    expect((await oci.generateSpec(ctx, oci.withNewPrivileges)).process?.noNewPrivileges).toBeUndefined();
    const s = await oci.generateSpec(ctx, oci.withNewPrivileges, oci.withNoNewPrivileges);
    expect(s.process?.noNewPrivileges).toBe(true);
  });

  it('withNamespacedCgroup uses the context', async () => {
    const s = await oci.generateSpec(ctx, oci.withCgroup('/x'), oci.withNamespacedCgroup);
    expect(s.linux?.cgroupsPath).toBe('/default/c1');
  });
});

describe('privileged', () => {
  it('decodes capability masks by bit number', () => {
    expect(oci.capabilitiesFromMask(0n)).toEqual([]);
    expect(oci.capabilitiesFromMask(0b101n)).toEqual(['CAP_CHOWN', 'CAP_DAC_READ_SEARCH']);
    expect(oci.capabilitiesFromMask((1n << 21n) | (1n << 63n))).toEqual(['CAP_SYS_ADMIN']);
  });

  it("gives the caller's capabilities, unmasks, makes sysfs writable and allows every device", async () => {
    const s = await oci.generateSpec(ctx, oci.withPrivileged);
    const eff = /CapEff:\s*([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;
    expect(s.process?.capabilities?.bounding).toEqual(oci.capabilitiesFromMask(BigInt(`0x${eff}`)));
    expect(s.linux?.maskedPaths).toBeUndefined();
    expect(s.linux?.readonlyPaths).toBeUndefined();
    expect(s.mounts?.find((m) => m.type === 'sysfs')?.options).toEqual(['nosuid', 'noexec', 'nodev', 'rw']);
    expect(s.linux?.resources?.devices).toEqual([{ allow: true, access: 'rwm' }]);
    const nul = s.linux?.devices?.find((d) => d.path === '/dev/null');
    expect(nul).toMatchObject({ type: 'c', major: 1, minor: 3 });
    expect(s.linux?.devices?.some((d) => d.path.startsWith('/dev/pts/'))).toBe(false);
  });
});

describe('runSpecOpts', () => {
  const image: oci.ImageConfig = { Entrypoint: ['/entry'], Cmd: ['cmd'], Env: ['PATH=/bin'] };
  const gen = (flags: oci.RunSpecOptions) =>
    oci.generateSpec({ ...ctx, rootfs: async () => undefined }, ...oci.runSpecOpts(flags));

  it('gives ctr run defaults: devices, cpu shares 1024, the image process', async () => {
    const s = await gen({ image });
    expect(s.linux?.resources?.cpu).toEqual({ shares: 1024 });
    expect(s.linux?.resources?.devices).toHaveLength(10);
    expect(s.process?.args).toEqual(['/entry', 'cmd']);
  });

  it('args replace everything by default (ctr) or only cmd (docker)', async () => {
    expect((await gen({ image, args: ['/bin/echo', 'hi'] })).process?.args).toEqual(['/bin/echo', 'hi']);
    expect((await gen({ image, args: ['x'], argsReplace: 'cmd' })).process?.args).toEqual(['/entry', 'x']);
  });

  it('applies env, mounts, tty, net-host, read-only and user in one go', async () => {
    const s = await gen({
      image,
      env: ['A=1'],
      mounts: ['type=bind,src=/tmp,dst=/t,options=rbind:ro'],
      tty: true,
      netHost: 'h',
      readonly: true,
      user: '1000:1000',
      cpuShares: 0,
    });
    expect(s.process?.env).toEqual(['PATH=/bin', 'A=1', 'TERM=xterm', 'HOSTNAME=h']);
    expect(s.mounts?.find((m) => m.destination === '/t')).toEqual({
      destination: '/t',
      type: 'bind',
      source: '/tmp',
      options: ['rbind', 'ro'],
    });
    expect(s.root?.readonly).toBe(true);
    expect(s.process?.user).toEqual({ uid: 1000, gid: 1000, additionalGids: [1000] });
    expect(s.linux?.resources?.cpu).toBeUndefined();
  });

  it('runs an unmanaged rootfs with the given args', async () => {
    const s = await gen({ rootfsPath: '/srv/r', args: ['/bin/true'] });
    expect(s.root).toEqual({ path: '/srv/r' });
    expect(s.process?.args).toEqual(['/bin/true']);
  });

  it('refuses a bad mount flag before building anything', () => {
    expect(() => oci.runSpecOpts({ mounts: ['bogus'] })).toThrow(/expected key=val/);
  });
});
