import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createLogger,
  formatLine,
  parseFlags,
  parseLogLevel,
  resolveConfig,
  startFailure,
} from '@berth/daemon';

describe('parseFlags', () => {
  test('takes containerd flags in their long, short and = forms', () => {
    expect(
      parseFlags(['-a', '/s.sock', '--root', '/r', '--state=/s', '-c', 'c.toml', '--log-level', 'debug']),
    ).toEqual({
      address: '/s.sock',
      root: '/r',
      state: '/s',
      config: 'c.toml',
      logLevel: 'debug',
      version: false,
      help: false,
      args: [],
    });
    expect(parseFlags(['--address=/x', '-l', 'warn', 'config', 'default'])).toMatchObject({
      address: '/x',
      logLevel: 'warn',
      args: ['config', 'default'],
    });
    expect(parseFlags(['--version']).version).toBe(true);
    expect(parseFlags(['-h']).help).toBe(true);
  });

  test('unknown flags and missing values are errors naming the flag', () => {
    expect(() => parseFlags(['--bogus'])).toThrow('flag provided but not defined: -bogus');
    expect(() => parseFlags(['--root'])).toThrow('flag needs an argument: -root');
    expect(() => parseFlags(['--help=yes'])).toThrow('flag --help takes no value');
  });
});

describe('resolveConfig', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-flags-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('flags win over the file', () => {
    const path = join(dir, 'c.toml');
    writeFileSync(path, 'version = 2\nroot = "/file-root"\nstate = "/file-state"\n[debug]\nlevel = "info"\n');
    const c = resolveConfig(parseFlags(['-c', path, '--root', '/flag-root', '-l', 'debug', '-a', '/a.sock']));
    expect(c).toMatchObject({
      root: '/flag-root',
      state: '/file-state',
      debug: { level: 'debug' },
      grpc: { address: '/a.sock' },
    });
  });

  test('an invalid --log-level is refused naming it', () => {
    writeFileSync(join(dir, 'ok.toml'), 'version = 2\n');
    expect(() => resolveConfig(parseFlags(['-c', join(dir, 'ok.toml'), '-l', 'chatty']))).toThrow(
      'not a valid log level: "chatty"',
    );
  });
});

describe('logging', () => {
  test('formats logfmt lines with time, level, msg and quoted fields', () => {
    const line = formatLine(new Date('2024-01-02T03:04:05.678Z'), 'warn', 'loading "x"', {
      id: 'io.containerd.content.v1.content',
      error: 'no such file',
      n: 3,
    });
    expect(line).toBe(
      'time="2024-01-02T03:04:05.678Z" level=warning msg="loading \\"x\\"" id=io.containerd.content.v1.content error="no such file" n=3\n',
    );
  });

  test('drops lines below the level and carries fields through with()', () => {
    const lines: string[] = [];
    const log = createLogger('info', (l) => lines.push(l));
    log.debug('hidden');
    log.with({ a: 1 }).with({ b: 'two' }).info('shown');
    log.setLevel('debug');
    log.debug('now shown');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/level=info msg="shown" a=1 b=two\n$/);
    expect(lines[1]).toMatch(/level=debug msg="now shown"\n$/);
  });

  test('parses logrus level names', () => {
    expect(parseLogLevel('WARNING')).toBe('warn');
    expect(parseLogLevel('trace')).toBe('trace');
    expect(() => parseLogLevel('loud')).toThrow('not a valid log level: "loud"');
  });
});

describe('startFailure', () => {
  test('a module that cannot be loaded is reported as a broken installation, without the require stack', () => {
    const err = Object.assign(new Error("Cannot find module 'lodash.camelcase'\nRequire stack:\n- /a/b.js"), {
      code: 'MODULE_NOT_FOUND',
    });
    const text = startFailure(err);
    expect(text).toMatch(
      /^Cannot find module 'lodash\.camelcase': berthd's installation is incomplete; reinstall/,
    );
    expect(text).not.toContain('Require stack');
  });

  test('any other error keeps its own message', () => {
    expect(startFailure(new Error('socket /x: another daemon is already serving on it'))).toBe(
      'socket /x: another daemon is already serving on it',
    );
  });
});
