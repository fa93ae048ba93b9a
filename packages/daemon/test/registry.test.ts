import { join } from 'node:path';
import { PluginType, type Registration, SkipPluginError } from '@berth/api';
import {
  mergeDeep,
  type PluginInitContext,
  PluginRegistry,
  pluginUri,
  sortRegistrations,
} from '@berth/daemon';

const reg = (type: string, id: string, requires?: string[], init?: Registration['init']): Registration => ({
  type,
  id,
  requires,
  init: init ?? (() => ({ type, id })),
});

const uris = (rs: readonly Registration[]) => rs.map(pluginUri);

describe('sortRegistrations', () => {
  test('puts every plugin after the types it requires, keeping registration order otherwise', () => {
    const sorted = sortRegistrations([
      reg('t.grpc', 'a', ['t.service']),
      reg('t.service', 's1', ['t.meta']),
      reg('t.other', 'x'),
      reg('t.meta', 'm'),
      reg('t.service', 's2'),
    ]);
    expect(uris(sorted)).toEqual(['t.meta.m', 't.service.s1', 't.service.s2', 't.grpc.a', 't.other.x']);
  });

  test('"*" comes after every plugin that does not itself require "*"', () => {
    const sorted = sortRegistrations([
      reg('t.all', 'last', ['*']),
      reg('t.a', 'a'),
      reg('t.b', 'b', ['t.a']),
    ]);
    expect(uris(sorted)).toEqual(['t.a.a', 't.b.b', 't.all.last']);
  });

  test('a cycle fails naming the plugins on it', () => {
    expect(() =>
      sortRegistrations([reg('t.a', 'one', ['t.b']), reg('t.b', 'two', ['t.a']), reg('t.c', 'free')]),
    ).toThrow(/plugin t\.a\.one: dependency cycle t\.a\.one -> t\.b\.two -> t\.a\.one/);
  });

  test('two plugins of a type that requires its own type are a cycle', () => {
    expect(() => sortRegistrations([reg('t.s', 'x', ['t.s']), reg('t.s', 'y', ['t.s'])])).toThrow(
      /dependency cycle/,
    );
  });

  test('a required type no registration provides fails naming the plugin and the type', () => {
    expect(() => sortRegistrations([reg('t.a', 'needy', ['t.missing'])])).toThrow(
      'plugin t.a.needy requires t.missing, which no plugin provides',
    );
  });

  test('a duplicate type.id fails naming it', () => {
    expect(() => sortRegistrations([reg('t.a', 'x'), reg('t.a', 'x')])).toThrow(
      'plugin t.a.x: registered twice',
    );
  });

  test('"*" mixed with other requirements is refused', () => {
    expect(() => sortRegistrations([reg('t.a', 'x', ['*', 't.b']), reg('t.b', 'y')])).toThrow(
      /"\*" must be its only/,
    );
  });
});

describe('PluginRegistry', () => {
  const base = { root: '/r', state: '/s', address: '/s/sock' };

  test('inits in order with root/state under <dir>/<type>.<id>, merged config, and get/getAll/getById', async () => {
    const seen: string[] = [];
    const registry = new PluginRegistry(
      [
        {
          type: 't.grpc',
          id: 'api',
          requires: ['t.svc'],
          init: async (ic) => {
            seen.push(`api root=${ic.root} state=${ic.state}`);
            const one = await ic.get<string>('t.svc');
            const all = await ic.getAll<string>('t.svc');
            const byId = await ic.getById<string>('t.svc', 'b');
            return `${one}|${[...all.keys()].join(',')}|${byId}`;
          },
        },
        {
          type: 't.svc',
          id: 'a',
          config: { size: 1, nested: { keep: true, level: 'x' } },
          init: (ic) => {
            seen.push(`a config=${JSON.stringify(ic.config)}`);
            ic.exports.where = 'here';
            (ic as PluginInitContext).capabilities.push('fast');
            return 'A';
          },
        },
        { type: 't.svc', id: 'b', init: () => 'B' },
      ],
      { ...base, pluginConfig: (uri) => (uri === 't.svc.a' ? { nested: { level: 'y' } } : undefined) },
    );
    await registry.initAll();
    expect(seen).toEqual([
      'a config={"size":1,"nested":{"keep":true,"level":"y"}}',
      `api root=${join('/r', 't.grpc.api')} state=${join('/s', 't.grpc.api')}`,
    ]);
    const records = registry.plugins();
    expect(records.map((p) => [p.uri, p.state])).toEqual([
      ['t.svc.a', 'loaded'],
      ['t.svc.b', 'loaded'],
      ['t.grpc.api', 'loaded'],
    ]);
    expect(records[2]!.instance).toBe('A|a,b|B');
    expect(records[0]!.exports).toEqual({ where: 'here' });
    expect(records[0]!.capabilities).toEqual(['fast']);
    expect(records[2]!.requires).toEqual(['t.svc']);
  });

  test('a plugin throwing SkipPluginError is reported skipped and others carry on', async () => {
    const registry = new PluginRegistry(
      [
        reg('t.snap', 'btrfs', [], () => {
          throw new SkipPluginError('not a btrfs filesystem');
        }),
        reg('t.snap', 'native'),
      ],
      base,
    );
    await registry.initAll();
    const [btrfs, native] = registry.plugins();
    expect(btrfs!.state).toBe('skipped');
    expect(btrfs!.error?.message).toBe('not a btrfs filesystem');
    expect(native!.state).toBe('loaded');
  });

  test('an init error is recorded and a dependent asking for it fails with a message naming it', async () => {
    const registry = new PluginRegistry(
      [
        reg(PluginType.Metadata, 'sqlite', [], () => {
          throw new Error('disk on fire');
        }),
        reg(PluginType.GC, 'scheduler', [PluginType.Metadata], async (ic) => ic.get(PluginType.Metadata)),
      ],
      base,
    );
    await registry.initAll();
    const [meta, gc] = registry.plugins();
    expect(meta!.state).toBe('error');
    expect(meta!.error?.message).toBe('disk on fire');
    expect(gc!.state).toBe('error');
    expect(gc!.error?.message).toBe('plugin io.containerd.metadata.v1.sqlite failed to load: disk on fire');
  });

  test('a skipped dependency is named as skipped', async () => {
    const registry = new PluginRegistry(
      [
        reg('t.a', 'x', [], () => {
          throw new SkipPluginError('nope');
        }),
        reg('t.b', 'y', ['t.a'], async (ic) => ic.getById('t.a', 'x')),
      ],
      base,
    );
    await registry.initAll();
    expect(registry.plugins()[1]!.error?.message).toBe('plugin t.a.x was skipped: nope');
  });

  test('disabled plugins are not loaded nor listed; their dependents fail naming the disabled plugin', async () => {
    const init = jest.fn(() => 'never');
    const registry = new PluginRegistry(
      [reg('t.a', 'off', [], init), reg('t.b', 'user', ['t.a'], async (ic) => ic.get('t.a'))],
      { ...base, disabled: ['t.a.off'] },
    );
    await registry.initAll();
    expect(init).not.toHaveBeenCalled();
    expect(registry.plugins().map((p) => p.uri)).toEqual(['t.b.user']);
    expect(registry.plugins()[0]!.error?.message).toBe('no plugins registered for t.a: t.a.off disabled');
  });

  test('asking for a type outside requires is refused (init order only covers requires)', async () => {
    const registry = new PluginRegistry(
      [reg('t.a', 'x'), reg('t.b', 'y', [], async (ic) => ic.get('t.a'))],
      base,
    );
    await registry.initAll();
    expect(registry.plugins()[1]!.error?.message).toMatch(
      /plugin t\.b\.y asked for t\.a, which is not in its requires/,
    );
  });

  test('getById for an unknown id is NotFound naming it', async () => {
    const registry = new PluginRegistry(
      [reg('t.a', 'x'), reg('t.b', 'y', ['t.a'], async (ic) => ic.getById('t.a', 'z'))],
      base,
    );
    await registry.initAll();
    expect(registry.plugins()[1]!.error).toMatchObject({
      code: 'ERR_NOT_FOUND',
      message: 'no t.a plugins with id z',
    });
  });

  test('a config error from mergeConfig is the plugin init error', async () => {
    const registry = new PluginRegistry([{ type: 't.a', id: 'x', config: { n: 1 }, init: () => 'ok' }], {
      ...base,
      pluginConfig: () => ({ n: 'one' }),
      mergeConfig: () => {
        throw new Error('bad n');
      },
    });
    await registry.initAll();
    expect(registry.plugins()[0]).toMatchObject({ state: 'error', error: new Error('bad n') });
  });

  test('close() closes loaded instances in reverse order and survives a failing close', async () => {
    const closed: string[] = [];
    const closer =
      (name: string, fail = false) =>
      () => ({
        close: async () => {
          closed.push(name);
          if (fail) throw new Error('close failed');
        },
      });
    const registry = new PluginRegistry(
      [reg('t.a', 'first', [], closer('first')), reg('t.b', 'second', ['t.a'], closer('second', true))],
      base,
    );
    await registry.initAll();
    await registry.close();
    expect(closed).toEqual(['second', 'first']);
  });
});

describe('mergeDeep', () => {
  test('tables merge, scalars and arrays replace, the base is not mutated', () => {
    const base = { a: 1, t: { x: 1, y: [1, 2] } };
    expect(mergeDeep(base, { t: { y: [3] }, b: 2 })).toEqual({ a: 1, t: { x: 1, y: [3] }, b: 2 });
    expect(base).toEqual({ a: 1, t: { x: 1, y: [1, 2] } });
  });
});
