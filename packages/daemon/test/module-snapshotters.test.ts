import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InterfaceVersionError, InterfaceVersions, PluginType, type Registration } from '@berth/api';
import {
  checkInterfaceVersions,
  type DaemonConfig,
  defaultConfig,
  loadSnapshotterModule,
  moduleOptions,
  moduleRegistrations,
  moduleSearchPaths,
  PluginRegistry,
  startDaemon,
} from '@berth/daemon';

const URI = 'io.containerd.snapshotter.v1.quota';
const METHODS = ['stat', 'update', 'usage', 'mounts', 'prepare', 'view', 'commit', 'remove', 'walk', 'close'];

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'module-snapshotters-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A package in `<dir>/node_modules/<name>` whose index.js is body. */
function pkg(name: string, body: string, at = join(dir, 'node_modules', name)): string {
  mkdirSync(at, { recursive: true });
  writeFileSync(join(at, 'package.json'), JSON.stringify({ name, version: '1.0.0', main: 'index.js' }));
  writeFileSync(join(at, 'index.js'), body);
  return join(at, 'index.js');
}

/** A module whose plugin implements `version` and whose snapshotter records its options. */
const snapshotterModule = (version: string) => `
  const methods = ${JSON.stringify(METHODS)};
  exports.plugin = {
    implements: ${JSON.stringify(version)},
    config: { size: 1, name: 'default' },
    init(ic) {
      const sn = Object.fromEntries(methods.map((m) => [m, async () => {}]));
      sn.options = ic.config;
      sn.root = ic.root;
      return sn;
    },
  };`;

const configWith = (plugins: DaemonConfig['plugins'], extra: Partial<DaemonConfig> = {}): DaemonConfig => ({
  ...defaultConfig(),
  configFile: join(dir, 'config.toml'),
  root: join(dir, 'root'),
  state: join(dir, 'state'),
  plugins,
  ...extra,
});

describe('loadSnapshotterModule', () => {
  test('finds a package by name from the config directory, or by a relative path', () => {
    const index = pkg('quota-sn', snapshotterModule(PluginType.Snapshot));
    const paths = moduleSearchPaths(configWith({}));
    expect(paths[0]).toBe(dir);
    expect(loadSnapshotterModule(URI, 'quota-sn', paths).resolved).toBe(index);
    expect(loadSnapshotterModule(URI, './node_modules/quota-sn', paths).resolved).toBe(index);
  });

  test('a module built for another interface version is refused, naming both versions', () => {
    pkg('sn-v2', snapshotterModule('io.containerd.snapshotter.v2'));
    const load = () => loadSnapshotterModule(URI, 'sn-v2', [dir]);
    expect(load).toThrow(InterfaceVersionError);
    expect(load).toThrow(
      'plugin "io.containerd.snapshotter.v1.quota" implements io.containerd.snapshotter.v2, berthd offers io.containerd.snapshotter.v1',
    );
  });

  test('a module of another interface altogether is refused the same way', () => {
    pkg('content', snapshotterModule(PluginType.Content));
    expect(() => loadSnapshotterModule(URI, 'content', [dir])).toThrow(
      'plugin "io.containerd.snapshotter.v1.quota" implements io.containerd.content.v1, berthd offers io.containerd.snapshotter.v1',
    );
  });

  test.each([
    ['missing', null, `plugins."${URI}".module = "missing": cannot find the package (looked from `],
    ['noplugin', 'exports.other = 1;', 'exports no "plugin" with an init function'],
    [
      'noversion',
      'exports.plugin = { init() {} };',
      'the plugin declares no interface version (implements = undefined',
    ],
    [
      'badversion',
      'exports.plugin = { implements: "snapshotter", init() {} };',
      'implements = "snapshotter"',
    ],
    ['throws', 'throw new Error("no native addon here");', 'failed: no native addon here'],
  ])('%s: InvalidArgument naming the module and why', (name, body, message) => {
    if (body !== null) pkg(name, body);
    const load = () => loadSnapshotterModule(URI, name, [dir]);
    expect(load).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(load).toThrow(message);
  });
});

describe('moduleRegistrations', () => {
  test('registers a snapshotter whose config is its defaults with the table (less module) over them', async () => {
    pkg('quota-sn', snapshotterModule(PluginType.Snapshot));
    const config = configWith({
      [URI]: { module: 'quota-sn', size: 42 },
      'io.containerd.gc.v1.scheduler': {},
    });
    const regs = moduleRegistrations(config);
    expect(regs.map((r) => [r.type, r.id, r.config])).toEqual([
      [PluginType.Snapshot, 'quota', { size: 1, name: 'default' }],
    ]);
    expect(moduleOptions(config.plugins[URI])).toEqual({ size: 42 });
    const registry = new PluginRegistry(regs, {
      root: config.root,
      state: config.state,
      address: '',
      pluginConfig: (uri) => moduleOptions(config.plugins[uri]),
    });
    await registry.initAll();
    const [rec] = registry.plugins();
    expect(rec).toMatchObject({ uri: URI, state: 'loaded', exports: { implements: PluginType.Snapshot } });
    expect(rec!.instance).toMatchObject({
      options: { size: 42, name: 'default' },
      root: join(config.root, URI),
    });
  });

  test('an init that returns no snapshotter fails that plugin, naming what is missing', async () => {
    pkg('half', `exports.plugin = { implements: '${PluginType.Snapshot}', init: () => ({ stat() {} }) };`);
    const config = configWith({ [URI]: { module: 'half' } });
    const registry = new PluginRegistry(moduleRegistrations(config), {
      root: config.root,
      state: config.state,
      address: '',
    });
    await registry.initAll();
    expect(registry.plugins()[0]!.error?.message).toBe(
      `plugin ${URI}: init returned no snapshotter (missing update, usage, mounts, prepare, view, commit, remove, walk, close)`,
    );
  });

  test.each([
    ['io.containerd.content.v1.mine', 'only snapshotters (io.containerd.snapshotter.v1) load from a module'],
    [
      'io.containerd.snapshotter.v2.mine',
      'berthd offers io.containerd.snapshotter.v1: name the plugin "io.containerd.snapshotter.v1.mine"',
    ],
  ])('a module under %s is refused', (uri, message) => {
    pkg('quota-sn', snapshotterModule(PluginType.Snapshot));
    expect(() => moduleRegistrations(configWith({ [uri]: { module: 'quota-sn' } }))).toThrow(message);
  });

  test('module must be a package name; a disabled plugin is not loaded at all', () => {
    expect(() => moduleRegistrations(configWith({ [URI]: { module: 3 } }))).toThrow(
      `invalid config: plugins."${URI}".module = 3: expected a package name or path`,
    );
    expect(
      moduleRegistrations(configWith({ [URI]: { module: 'missing' } }, { disabledPlugins: [URI] })),
    ).toEqual([]);
  });

  test('berthd does not start with a module built for another interface version', async () => {
    pkg('sn-v2', snapshotterModule('io.containerd.snapshotter.v2'));
    const config = configWith({ [URI]: { module: 'sn-v2' } });
    config.grpc.address = join(dir, 'berth.sock');
    await expect(startDaemon(config, { registrations: [] })).rejects.toThrow(
      'plugin "io.containerd.snapshotter.v1.quota" implements io.containerd.snapshotter.v2, berthd offers io.containerd.snapshotter.v1',
    );
  });
});

describe('checkInterfaceVersions', () => {
  const reg = (type: string, id = 'x'): Registration => ({ type, id, init: () => ({ type }) });

  test('a registration of another version of a known interface is refused before any plugin starts', () => {
    expect(() => new PluginRegistry([reg('io.containerd.snapshotter.v2', 'future')], opts())).toThrow(
      'plugin "io.containerd.snapshotter.v2.future" implements io.containerd.snapshotter.v2, berthd offers io.containerd.snapshotter.v1',
    );
    const same = [reg(PluginType.Snapshot), reg('t.svc'), reg('example.widget.v7')];
    expect(checkInterfaceVersions(same)).toEqual(same);
  });

  test('with an adapter, an older registration is served under the offered type, its instance adapted', async () => {
    const offered = {
      ...InterfaceVersions,
      'io.containerd.snapshotter': {
        id: 'io.containerd.snapshotter.v2',
        family: 'io.containerd.snapshotter',
        version: 2,
      },
    };
    const adapter = {
      from: 'io.containerd.snapshotter.v1',
      to: 'io.containerd.snapshotter.v2',
      adapt: (impl: object) => ({ ...impl, adapted: true }),
    };
    const [r] = checkInterfaceVersions([reg('io.containerd.snapshotter.v1', 'old')], [adapter], offered);
    expect(r!.type).toBe('io.containerd.snapshotter.v2');
    expect(await r!.init({} as never)).toEqual({ type: 'io.containerd.snapshotter.v1', adapted: true });
  });

  const opts = () => ({ root: join(dir, 'root'), state: join(dir, 'state'), address: '' });
});
