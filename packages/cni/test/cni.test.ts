import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cni, CniConfigError, CniPluginError, cacheFile, confToList, parseConfList } from '@berth/cni';

// Plugins here are small shell scripts that log what they were given: the spec's calling
// convention (env, stdin, prevResult chaining, runtimeConfig) is checked without root.
// The real plugins run in cni.int.test.ts.
let root: string;
let bin: string;
let conf: string;
let cache: string;
let log: string;

const RESULT = (ip: string) =>
  JSON.stringify({
    cniVersion: '1.0.0',
    interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:01', sandbox: '/ns' }],
    ips: [{ interface: 0, address: `${ip}/24`, gateway: '10.1.0.1' }],
    dns: { nameservers: ['10.1.0.53'] },
  });

// logs one JSON line per call: {cmd, env..., stdin}, then answers per command
async function plugin(name: string, body: string): Promise<void> {
  const p = join(bin, name);
  await writeFile(
    p,
    `#!/bin/sh
in=$(cat)
printf '{"plugin":"%s","cmd":"%s","id":"%s","netns":"%s","ifname":"%s","args":"%s","path":"%s","stdin":%s}\\n' \\
  "${name}" "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH" "$in" >> ${log}
${body}
`,
  );
  await chmod(p, 0o755);
}

async function calls(): Promise<any[]> {
  const text = await readFile(log, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

const writeConf = (name: string, doc: unknown) =>
  writeFile(join(conf, name), typeof doc === 'string' ? doc : JSON.stringify(doc));

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-cni-unit-'));
  bin = join(root, 'bin');
  conf = join(root, 'conf');
  cache = join(root, 'cache');
  log = join(root, 'calls.log');
  await mkdir(bin);
  await mkdir(conf);
  // "first" answers ADD with a result; "second" passes prevResult through, as portmap does
  await plugin('first', `case "$CNI_COMMAND" in ADD) echo '${RESULT('10.1.0.7')}';; esac`);
  await plugin(
    'second',
    `case "$CNI_COMMAND" in ADD) printf '%s' "$in" | ${process.execPath} -e 'let s="";process.stdin.on("data",(d)=>{s+=d}).on("end",()=>process.stdout.write(JSON.stringify(JSON.parse(s).prevResult)))';; esac`,
  );
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const newCni = (extra: Partial<ConstructorParameters<typeof Cni>[0]> = {}) =>
  new Cni({ binDirs: ['/nonexistent-dir', bin], confDir: conf, cacheDir: cache, ...extra });

const LIST = {
  cniVersion: '1.0.0',
  name: 'net1',
  plugins: [
    { type: 'first', ipam: { type: 'x' } },
    { type: 'second', capabilities: { portMappings: true } },
  ],
};

describe('load and status', () => {
  test('no config: not ready with containerd wording, the dir named in the load status', async () => {
    const cni = newCni();
    await cni.load();
    const st = cni.status();
    expect(st.ready).toBe(false);
    expect(st.reason).toBe('NetworkPluginNotReady');
    expect(st.message).toBe('Network plugin returns error: cni plugin not initialized');
    expect(st.lastLoadStatus).toContain(`no network config found in ${conf}`);
    await expect(cni.setup('c1', '/proc/self/ns/net')).rejects.toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
      message: 'cni plugin not initialized',
    });
  });

  test('a missing confDir is the same as an empty one', async () => {
    const cni = new Cni({ binDirs: [bin], confDir: join(root, 'nope'), cacheDir: cache });
    await cni.load();
    expect(cni.status().ready).toBe(false);
    expect(cni.loadErrors()).toEqual([]);
  });

  test('lexical order, maxConfNum, ifPrefix; a .conf becomes a list of one', async () => {
    await writeConf('20-b.conflist', { ...LIST, name: 'b' });
    await writeConf('10-a.conf', { cniVersion: '0.4.0', name: 'a', type: 'first' });
    await writeConf('30-c.json', { cniVersion: '0.3.1', name: 'c', type: 'first' });
    await writeConf('40-d.txt', 'not a config');
    let cni = newCni();
    await cni.load();
    expect(cni.status()).toMatchObject({ ready: true, lastLoadStatus: 'OK' });
    expect(cni.networks().map((n) => [n.name, n.ifName])).toEqual([['a', 'eth0']]);
    cni = newCni({ maxConfNum: 0, ifPrefix: 'net' });
    await cni.load();
    expect(cni.networks()).toEqual([
      { name: 'a', cniVersion: '0.4.0', plugins: ['first'], ifName: 'net0', file: join(conf, '10-a.conf') },
      {
        name: 'b',
        cniVersion: '1.0.0',
        plugins: ['first', 'second'],
        ifName: 'net1',
        file: join(conf, '20-b.conflist'),
      },
      { name: 'c', cniVersion: '0.3.1', plugins: ['first'], ifName: 'net2', file: join(conf, '30-c.json') },
    ]);
  });

  test('a bad file is reported with its name and skipped; the next one is used', async () => {
    await writeConf('10-bad.conflist', '{"name": "x", "plugins": [');
    await writeConf('20-noplugins.conflist', { name: 'y', cniVersion: '1.0.0', plugins: [] });
    await writeConf('30-notype.conf', { name: 'z', cniVersion: '1.0.0', plugins: [{ type: 'first' }] });
    await writeConf('40-good.conflist', LIST);
    const cni = newCni();
    await cni.load();
    expect(cni.networks().map((n) => n.name)).toEqual(['net1']);
    const errs = cni.loadErrors();
    expect(errs.map((e) => e.file)).toEqual([
      join(conf, '10-bad.conflist'),
      join(conf, '20-noplugins.conflist'),
      join(conf, '30-notype.conf'),
    ]);
    expect(errs[0]).toBeInstanceOf(CniConfigError);
    expect(errs[0]!.code).toBe('ERR_INVALID_ARGUMENT');
    expect(errs[0]!.message).toContain(
      `failed to load CNI config list file ${join(conf, '10-bad.conflist')}`,
    );
    expect(errs[1]!.message).toContain('no plugins in list');
    expect(errs[2]!.message).toBe(`network type not found in ${join(conf, '30-notype.conf')}`);
    expect(cni.status().ready).toBe(true);
    expect(cni.status().lastLoadStatus).toContain('10-bad.conflist');
  });

  test('only bad files: not ready, and the load status names them', async () => {
    await writeConf('10-bad.conflist', { name: 'bad name!', plugins: [{ type: 'first' }] });
    const cni = newCni();
    await cni.load();
    expect(cni.status().ready).toBe(false);
    expect(cni.status().lastLoadStatus).toContain('invalid network name "bad name!"');
    expect(cni.status().lastLoadStatus).toContain('10-bad.conflist');
  });

  test('parse rules of libcni', () => {
    expect(() => parseConfList(Buffer.from('{"plugins":[{"type":"a"}]}'))).toThrow('no name');
    expect(() => parseConfList(Buffer.from('{"name":"n"}'))).toThrow("no 'plugins' key");
    expect(() => parseConfList(Buffer.from('{"name":"n","plugins":[{}]}'))).toThrow("missing 'type'");
    expect(() => parseConfList(Buffer.from('{"name":"n","plugins":[{"type":"../x"}]}'))).toThrow(
      'invalid plugin name',
    );
    expect(() =>
      parseConfList(Buffer.from('{"name":"n","cniVersion":"one","plugins":[{"type":"a"}]}')),
    ).toThrow('invalid cniVersion "one"');
    expect(
      parseConfList(Buffer.from('{"name":"n","disableCheck":"true","plugins":[{"type":"a"}]}')).disableCheck,
    ).toBe(true);
    const l = confToList(Buffer.from('{"name":"n","cniVersion":"0.4.0","type":"a","k":1}'));
    expect(JSON.parse(l.bytes.toString())).toEqual({
      name: 'n',
      cniVersion: '0.4.0',
      plugins: [{ name: 'n', cniVersion: '0.4.0', type: 'a', k: 1 }],
    });
  });
});

describe('calling plugins', () => {
  test('ADD chains prevResult, sends env and runtimeConfig only to plugins with the capability', async () => {
    await writeConf('10.conflist', LIST);
    const cni = newCni();
    await cni.load();
    const att = await cni.setup('ctr1', '/var/run/netns/x', {
      args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'p' },
      portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1' }],
      capabilityArgs: { dns: { servers: ['1.1.1.1'] } },
    });
    expect(att).toHaveLength(1);
    expect(att[0]).toMatchObject({
      network: 'net1',
      ifName: 'eth0',
      ips: [{ version: '4', address: '10.1.0.7/24', gateway: '10.1.0.1', interface: 0 }],
      interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:01', sandbox: '/ns' }],
      dns: { nameservers: ['10.1.0.53'] },
    });
    const [a, b] = await calls();
    expect(a).toMatchObject({
      plugin: 'first',
      cmd: 'ADD',
      id: 'ctr1',
      netns: '/var/run/netns/x',
      ifname: 'eth0',
      args: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p',
      path: `/nonexistent-dir:${bin}`,
    });
    expect(a.stdin).toEqual({ type: 'first', ipam: { type: 'x' }, name: 'net1', cniVersion: '1.0.0' });
    expect(b.stdin.prevResult).toEqual(JSON.parse(RESULT('10.1.0.7')));
    expect(b.stdin.runtimeConfig).toEqual({
      portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1' }],
    });
    // libcni's cache file, readable by containerd
    const cached = JSON.parse(await readFile(cacheFile(cache, 'net1', 'ctr1', 'eth0'), 'utf8'));
    expect(cached).toMatchObject({
      kind: 'cniCacheV1',
      containerId: 'ctr1',
      ifName: 'eth0',
      networkName: 'net1',
      cniArgs: [
        ['IgnoreUnknown', '1'],
        ['K8S_POD_NAMESPACE', 'default'],
        ['K8S_POD_NAME', 'p'],
      ],
      result: JSON.parse(RESULT('10.1.0.7')),
    });
    expect(cached.capabilityArgs.portMappings).toHaveLength(1);
    expect(JSON.parse(Buffer.from(cached.config, 'base64').toString())).toEqual(LIST);
  });

  test('DEL replays the cached config, args and result in reverse order, after a restart and a conf change', async () => {
    await writeConf('10.conflist', LIST);
    const cni = newCni();
    await cni.load();
    await cni.setup('ctr2', '/gone/ns', {
      args: { K8S_POD_NAME: 'p' },
      portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
    });
    // the conf now names another network; a new instance has only the cache to go on
    await rm(join(conf, '10.conflist'));
    await writeConf('10.conflist', { ...LIST, name: 'other', plugins: [{ type: 'first' }] });
    const again = newCni();
    await again.load();
    await rm(log);
    await again.remove('ctr2', '/gone/ns');
    const dels = await calls();
    expect(dels.map((c) => [c.plugin, c.cmd, c.stdin.name])).toEqual([
      ['second', 'DEL', 'net1'],
      ['first', 'DEL', 'net1'],
      // the loaded network has no cache entry: DEL anyway, as go-cni would
      ['first', 'DEL', 'other'],
    ]);
    // the namespace no longer exists: empty CNI_NETNS, as libcni
    expect(dels[0].netns).toBe('');
    expect(dels[0].args).toBe('K8S_POD_NAME=p');
    expect(dels[0].stdin.prevResult).toEqual(JSON.parse(RESULT('10.1.0.7')));
    expect(dels[0].stdin.runtimeConfig.portMappings[0].hostPort).toBe(8080);
    expect(await readdir(join(cache, 'results'))).toEqual([]);
    await rm(log);
    await again.remove('ctr2', '/gone/ns');
    expect((await calls()).map((c) => c.stdin.name)).toEqual(['other']);
  });

  test('versions before 0.4.0 get no prevResult on DEL, and CHECK is refused', async () => {
    await writeConf('10.conflist', { ...LIST, cniVersion: '0.3.1' });
    const cni = newCni();
    await cni.load();
    await cni.setup('old', '/proc/self/ns/net');
    await expect(cni.check('old', '/proc/self/ns/net')).rejects.toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
      message: 'network "net1": configuration version "0.3.1" does not support the CHECK command',
    });
    await rm(log);
    await cni.remove('old', '/proc/self/ns/net');
    const dels = await calls();
    expect(dels).toHaveLength(2);
    expect(dels[0].netns).toBe('/proc/self/ns/net');
    for (const d of dels) expect(d.stdin.prevResult).toBeUndefined();
  });

  test('CHECK passes the cached result; disableCheck skips it; no cache is NotFound', async () => {
    await writeConf('10.conflist', LIST);
    const cni = newCni();
    await cni.load();
    await expect(cni.check('nothing', '/proc/self/ns/net')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    await cni.setup('ck', '/proc/self/ns/net');
    await rm(log);
    await cni.check('ck', '/proc/self/ns/net');
    const checks = await calls();
    expect(checks.map((c) => [c.plugin, c.cmd])).toEqual([
      ['first', 'CHECK'],
      ['second', 'CHECK'],
    ]);
    expect(checks[0].stdin.prevResult.ips[0].address).toBe('10.1.0.7/24');
    await writeConf('10.conflist', { ...LIST, disableCheck: true });
    await cni.load();
    await rm(log);
    await cni.check('ck', '/proc/self/ns/net');
    expect(await calls()).toEqual([]);
  });

  test("a plugin's JSON error becomes a CniPluginError naming plugin and network; what was added is DELeted", async () => {
    await plugin(
      'failing',
      `case "$CNI_COMMAND" in ADD) echo '{"cniVersion":"1.0.0","code":11,"msg":"try later","details":"busy"}'; exit 1;; esac`,
    );
    await writeConf('10.conflist', LIST);
    await writeConf('20.conflist', {
      cniVersion: '1.0.0',
      name: 'net2',
      plugins: [{ type: 'first' }, { type: 'failing' }],
    });
    const cni = newCni({ maxConfNum: 2 });
    await cni.load();
    const err = await cni.setup('bad1', '/proc/self/ns/net').catch((e) => e);
    expect(err).toBeInstanceOf(CniPluginError);
    expect(err).toMatchObject({
      code: 'ERR_UNKNOWN',
      network: 'net2',
      plugin: 'failing',
      command: 'ADD',
      cniCode: 11,
      msg: 'try later',
      details: 'busy',
      message: 'plugin type="failing" name="net2" failed (add): try later; busy',
    });
    const seq = (await calls()).map((c) => `${c.cmd} ${c.stdin.name}/${c.plugin}`);
    expect(seq).toEqual([
      'ADD net1/first',
      'ADD net1/second',
      'ADD net2/first',
      'ADD net2/failing',
      'DEL net2/failing',
      'DEL net2/first',
      'DEL net1/second',
      'DEL net1/first',
    ]);
    expect(await readdir(join(cache, 'results'))).toEqual([]);
  });

  test('stderr, silence and garbage from a failing plugin are reported as libcni does', async () => {
    await plugin('stderr', 'echo "boom" >&2; exit 3');
    await plugin('silent', 'exit 4');
    await plugin('garbage', 'echo "not json"; exit 1');
    for (const [type, text] of [
      ['stderr', 'netplugin failed: "boom"'],
      ['silent', 'netplugin failed with no error message: exit status 4'],
      ['garbage', 'netplugin failed but error parsing its diagnostic message "not json"'],
    ]) {
      await writeConf('10.conflist', { cniVersion: '1.0.0', name: `n-${type}`, plugins: [{ type }] });
      const cni = newCni();
      await cni.load();
      await expect(cni.setup('x', '/proc/self/ns/net')).rejects.toThrow(text);
    }
  });

  test('a missing plugin binary is named, with the search path', async () => {
    await writeConf('10.conflist', { cniVersion: '1.0.0', name: 'm', plugins: [{ type: 'no-such-plugin' }] });
    const cni = newCni();
    await cni.load();
    await expect(cni.setup('x', '/proc/self/ns/net')).rejects.toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
      message: `network "m": failed to find plugin "no-such-plugin" in path [/nonexistent-dir ${bin}]`,
    });
  });

  test('a plugin file that is not executable is named', async () => {
    await writeFile(join(bin, 'noexec'), '#!/bin/sh\n');
    await chmod(join(bin, 'noexec'), 0o644);
    await writeConf('10.conflist', { cniVersion: '1.0.0', name: 'ne', plugins: [{ type: 'noexec' }] });
    const cni = newCni();
    await cni.load();
    await expect(cni.setup('x', '/proc/self/ns/net')).rejects.toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
      message: expect.stringContaining(`network "ne": plugin ${join(bin, 'noexec')} could not be run:`),
    });
  });

  test('a plugin that hangs is killed after the timeout', async () => {
    await plugin('hang', 'exec sleep 30');
    await writeConf('10.conflist', { cniVersion: '1.0.0', name: 'h', plugins: [{ type: 'hang' }] });
    const cni = newCni({ pluginTimeoutMs: 300 });
    await cni.load();
    await expect(cni.setup('x', '/proc/self/ns/net')).rejects.toMatchObject({
      code: 'ERR_DEADLINE_EXCEEDED',
      message: expect.stringContaining('plugin type="hang" name="h" (add): did not finish within 300ms'),
    });
  });

  test("loopback: lo is brought up last with go-cni's cni-loopback network, and taken down with the rest", async () => {
    await plugin(
      'loopback',
      `case "$CNI_COMMAND" in ADD) echo '{"cniVersion":"0.3.1","interfaces":[{"name":"lo"}]}';; esac`,
    );
    await writeConf('10.conflist', { cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'first' }] });
    const cni = newCni({ loopback: true });
    await cni.load();
    expect(cni.networks().map((n) => n.name)).toEqual(['n']);
    const att = await cni.setup('lo1', '/proc/self/ns/net');
    expect(att.map((a) => [a.network, a.ifName])).toEqual([
      ['n', 'eth0'],
      ['cni-loopback', 'lo'],
    ]);
    expect(att[1]!.interfaces).toEqual([{ name: 'lo' }]);
    await rm(log);
    await cni.remove('lo1', '/proc/self/ns/net');
    expect((await calls()).map((c) => `${c.cmd} ${c.plugin} ${c.ifname}`).sort()).toEqual([
      'DEL first eth0',
      'DEL loopback lo',
    ]);
    expect(await readdir(join(cache, 'results'))).toEqual([]);
  });

  test('bad arguments are refused before any plugin runs', async () => {
    await writeConf('10.conflist', LIST);
    const cni = newCni();
    await cni.load();
    await expect(cni.setup('../x', '/proc/self/ns/net')).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    await expect(cni.setup('x', '')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(cni.setup('x', '/proc/self/ns/net', { args: { 'a;b': '1' } })).rejects.toThrow(
      'invalid CNI_ARGS',
    );
    await expect(
      cni.setup('x', '/proc/self/ns/net', {
        portMappings: [{ hostPort: 0, containerPort: 80, protocol: 'tcp' }],
      }),
    ).rejects.toThrow('hostPort 0 out of range');
    await expect(cni.remove('bad id', '')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    expect(await calls()).toEqual([]);
    expect(() => new Cni({ binDirs: [], confDir: conf, cacheDir: cache })).toThrow('binDirs');
  });
});
