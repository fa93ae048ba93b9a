import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  builtins,
  configToToml,
  DEFAULT_MAX_MESSAGE_SIZE,
  defaultConfig,
  loadConfig,
  mergePluginConfig,
  parseConfig,
  pluginUri,
} from '@berth/daemon';

describe('defaults', () => {
  test('are berth paths and containerd message limits', () => {
    const c = defaultConfig();
    expect(c).toMatchObject({
      version: 2,
      root: '/var/lib/berth',
      state: '/run/berth',
      disabledPlugins: [],
      grpc: { address: '/run/berth/berth.sock', maxRecvMessageSize: 16 << 20, maxSendMessageSize: 16 << 20 },
    });
    expect(DEFAULT_MAX_MESSAGE_SIZE).toBe(16777216);
  });
});

describe('parseConfig', () => {
  test('reads containerd version 2 keys', () => {
    const { config, warnings } = parseConfig(`
version = 2
root = "/tmp/r"
state = "/tmp/s"
disabled_plugins = ["io.containerd.grpc.v1.leases"]

[grpc]
  address = "/tmp/s/b.sock"
  uid = 10
  gid = 20
  max_recv_message_size = 1024
  max_send_message_size = 2048

[ttrpc]
  address = "/tmp/s/b.sock.ttrpc"

[debug]
  level = "debug"

[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "1s"

[proxy_plugins]
  [proxy_plugins.stargz]
    type = "snapshot"
    address = "/run/stargz.sock"
`);
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({
      root: '/tmp/r',
      state: '/tmp/s',
      disabledPlugins: ['io.containerd.grpc.v1.leases'],
      grpc: {
        address: '/tmp/s/b.sock',
        uid: 10,
        gid: 20,
        maxRecvMessageSize: 1024,
        maxSendMessageSize: 2048,
      },
      ttrpc: { address: '/tmp/s/b.sock.ttrpc' },
      debug: { level: 'debug' },
      plugins: { 'io.containerd.gc.v1.scheduler': { startup_delay: '1s' } },
      proxyPlugins: { stargz: { type: 'snapshot', address: '/run/stargz.sock' } },
    });
  });

  test('unknown keys and containerd keys berth ignores are warnings', () => {
    const { warnings } = parseConfig(
      'version = 2\nbogus = 1\noom_score = -999\n[grpc]\nnope = "x"\n[metrics]\naddress = ""\n',
    );
    expect(warnings).toEqual([
      'unknown config key bogus, ignored',
      'config key oom_score is not used by berth, ignored',
      'unknown config key grpc.nope, ignored',
      'config key metrics.address is not used by berth, ignored',
    ]);
  });

  test.each([
    ['root = 5', 'invalid config f.toml: root = 5: expected a string'],
    ['[grpc]\nuid = "root"', 'invalid config f.toml: grpc.uid = "root": expected an integer'],
    [
      '[grpc]\nmax_recv_message_size = 1.5',
      'invalid config f.toml: grpc.max_recv_message_size = 1.5: expected an integer',
    ],
    [
      '[grpc]\nmax_send_message_size = 0',
      'invalid config f.toml: grpc.max_send_message_size = 0: must be greater than 0',
    ],
    ['[grpc]\naddress = ""', 'invalid config f.toml: grpc.address = "": must not be empty'],
    [
      'disabled_plugins = "cri"',
      'invalid config f.toml: disabled_plugins = "cri": expected an array of strings',
    ],
    [
      'disabled_plugins = ["cri"]',
      'invalid config f.toml: disabled_plugins = ["cri"]: invalid plugin URI "cri"',
    ],
    ['version = 1', 'invalid config f.toml: version = 1: unsupported config version (berth reads version 2)'],
    ['grpc = 3', 'invalid config f.toml: grpc = 3: expected a table'],
    ['[debug]\nlevel = "loud"', 'invalid config f.toml: debug.level = "loud": not a valid log level: "loud"'],
    [
      '[proxy_plugins.x]\ntype = "snapshot"',
      'invalid config f.toml: proxy_plugins.x.address = undefined: expected a socket path',
    ],
    ['[plugins."cri"]\na = 1', 'invalid plugin URI "cri"'],
  ])('%s is InvalidArgument naming the key and value', (text, message) => {
    let err: unknown;
    try {
      parseConfig(text, 'f.toml');
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    expect((err as Error).message).toContain(message);
  });

  test('a TOML syntax error names the file, line and column', () => {
    expect(() => parseConfig('version = 2\nroot = "unterminated\n', 'x.toml')).toThrow(
      /^invalid config x\.toml:2:\d+: /,
    );
  });

  test('no version reads as version 2, with a warning', () => {
    const { config, warnings } = parseConfig('root = "/x"');
    expect(config.version).toBe(2);
    expect(warnings[0]).toMatch(/has no version/);
  });
});

describe('loadConfig', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-config-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('a missing default file gives the defaults', () => {
    expect(loadConfig(join(dir, 'nope.toml'), false).config).toEqual(defaultConfig());
  });

  test('a missing file given explicitly is an error naming it', () => {
    const path = join(dir, 'nope.toml');
    expect(() => loadConfig(path, true)).toThrow(`failed to load config ${path}`);
  });

  test('reads the file', () => {
    const path = join(dir, 'c.toml');
    writeFileSync(path, 'version = 2\nroot = "/elsewhere"\n');
    expect(loadConfig(path, true).config.root).toBe('/elsewhere');
  });
});

describe('mergePluginConfig', () => {
  const defaults = { size: 1, name: 'a', list: ['x'], table: { deep: true }, free: {} };

  test('merges over defaults; unknown keys are kept and warned about; free-form tables take any key', () => {
    const warnings: string[] = [];
    const merged = mergePluginConfig(
      't.a.x',
      defaults,
      { size: 2.5, table: { deep: false }, free: { anything: 'goes' }, extra: 1 },
      (m) => warnings.push(m),
    );
    expect(merged).toEqual({
      size: 2.5,
      name: 'a',
      list: ['x'],
      table: { deep: false },
      free: { anything: 'goes' },
      extra: 1,
    });
    expect(warnings).toEqual(['unknown config key plugins."t.a.x".extra']);
    expect(defaults.size).toBe(1);
  });

  test.each([
    [{ size: 'big' }, 'invalid config: plugins."t.a.x".size = "big": expected a number'],
    [{ name: 3 }, 'invalid config: plugins."t.a.x".name = 3: expected a string'],
    [{ list: 'x' }, 'invalid config: plugins."t.a.x".list = "x": expected an array'],
    [{ table: { deep: 'yes' } }, 'invalid config: plugins."t.a.x".table.deep = "yes": expected a boolean'],
    [{ table: 1 }, 'invalid config: plugins."t.a.x".table = 1: expected a table'],
  ])('%j is InvalidArgument naming the key and value', (table, message) => {
    expect(() => mergePluginConfig('t.a.x', defaults, table)).toThrow(message);
  });
});

describe('berthd config default', () => {
  test('prints every plugin default and parses back to the defaults', () => {
    const text = configToToml(defaultConfig(), builtins());
    const { config, warnings } = parseConfig(text);
    expect(warnings).toEqual([]);
    const withConfig = builtins().filter((r) => r.config !== undefined);
    expect(withConfig.length).toBeGreaterThan(0);
    expect(config).toEqual({
      ...defaultConfig(),
      plugins: Object.fromEntries(withConfig.map((r) => [pluginUri(r), r.config])),
    });
    expect(text).toContain('[plugins."io.containerd.gc.v1.scheduler"]');
    expect(text).toContain('[plugins."io.containerd.metadata.v1.sqlite"]');
    expect(text).toMatch(/max_recv_message_size = 16777216/);
  });
});
