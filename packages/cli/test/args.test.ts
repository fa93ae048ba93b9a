import { GLOBAL_FLAGS, helpText, parseArgs, ROOT, UsageError } from '@berth/cli';

const parse = (argv: string[], env: NodeJS.ProcessEnv = {}) => parseArgs(ROOT, GLOBAL_FLAGS, argv, env);

function runResult(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const r = parse(argv, env);
  if (r.kind !== 'run') throw new Error(`expected a command to run, got ${r.kind}`);
  return r;
}

function usageError(argv: string[]): UsageError {
  try {
    parse(argv);
  } catch (e) {
    if (e instanceof UsageError) return e;
    throw e;
  }
  throw new Error('expected a usage error');
}

describe('parseArgs', () => {
  it('resolves commands by name and alias', () => {
    expect(runResult(['namespaces', 'ls']).path).toEqual(['namespaces', 'list']);
    expect(runResult(['ns', 'rm', 'a']).path).toEqual(['namespaces', 'remove']);
    expect(runResult(['content', 'del', 'sha256:x']).path).toEqual(['content', 'delete']);
    expect(runResult(['plugin', 'list']).path).toEqual(['plugins', 'list']);
  });

  it('applies defaults, then the environment, then the command line', () => {
    expect(runResult(['version']).globals).toMatchObject({
      address: '/run/berth/berth.sock',
      namespace: 'default',
      format: 'table',
      timeout: 0,
    });
    const env = { CONTAINERD_ADDRESS: '/c.sock', CONTAINERD_NAMESPACE: 'envns' };
    expect(runResult(['version'], env).globals).toMatchObject({ address: '/c.sock', namespace: 'envns' });
    expect(runResult(['version'], { ...env, BERTH_ADDRESS: '/b.sock' }).globals.address).toBe('/b.sock');
    expect(runResult(['-a', '/x.sock', '-n', 'cli', 'version'], env).globals).toMatchObject({
      address: '/x.sock',
      namespace: 'cli',
    });
  });

  it('takes global flags anywhere, with = or a separate value', () => {
    const r = runResult(['content', '--namespace=n1', 'ls', '-q', '--address', '/s.sock', 'labels.a==b']);
    expect(r.globals).toMatchObject({ namespace: 'n1', address: '/s.sock' });
    expect(r.flags.quiet).toBe(true);
    expect(r.args).toEqual(['labels.a==b']);
  });

  it('parses typed flags: int, duration, repeatable, combined short booleans', () => {
    const r = runResult([
      'content',
      'ingest',
      '--expected-size',
      '42',
      '--label',
      'a=1',
      '--label=b=2',
      '--timeout',
      '1m30s',
      'ref',
    ]);
    expect(r.flags).toMatchObject({ 'expected-size': 42, label: ['a=1', 'b=2'] });
    expect(r.globals.timeout).toBe(90_000);
    expect(r.args).toEqual(['ref']);
    expect(runResult(['plugins', 'ls', '-qd']).flags).toMatchObject({ quiet: true, detailed: true });
    expect(runResult(['leases', 'create']).flags.expires).toBe(24 * 3600 * 1000);
    expect(runResult(['leases', 'create', '-x', '0']).flags.expires).toBe(0);
  });

  it('stops taking flags after --', () => {
    const r = runResult(['namespaces', 'create', '--', '-weird', 'k=v']);
    expect(r.args).toEqual(['-weird', 'k=v']);
  });

  it('answers --help and -h anywhere with the command reached', () => {
    expect(parse(['--help'])).toMatchObject({ kind: 'help', path: [] });
    expect(parse(['content', 'ingest', '-h'])).toMatchObject({ kind: 'help', path: ['content', 'ingest'] });
    expect(parse(['content', '--help', 'ls'])).toMatchObject({ kind: 'help', path: ['content', 'list'] });
    // Help wins over what would be a usage error.
    expect(parse(['content', 'get', '--help'])).toMatchObject({ kind: 'help', path: ['content', 'get'] });
    expect(parse(['--version'])).toEqual({ kind: 'version' });
  });

  it.each([
    [['frob'], /unknown command "frob" for "berth"/, []],
    [['content', 'frob'], /unknown command "frob" for "berth content"/, ['content']],
    [['content'], /"berth content" needs a command/, ['content']],
    [[], /"berth" needs a command/, []],
    [['content', 'ls', '--nope'], /unknown flag --nope/, ['content', 'list']],
    [['content', 'ls', '-z'], /unknown flag -z/, ['content', 'list']],
    [['content', 'get'], /"berth content get" expects 1 argument, got 0/, ['content', 'get']],
    [['content', 'get', 'a', 'b'], /expects 1 argument, got 2/, ['content', 'get']],
    [['leases', 'rm'], /expects at least 1 argument, got 0/, ['leases', 'remove']],
    [['version', 'extra'], /expects 0 arguments, got 1/, ['version']],
    [
      ['content', 'ingest', '--expected-size', 'ten', 'r'],
      /invalid value "ten" for --expected-size/,
      ['content', 'ingest'],
    ],
    [
      ['content', 'ingest', 'r', '--expected-size'],
      /flag --expected-size needs a value/,
      ['content', 'ingest'],
    ],
    [['--timeout', 'soon', 'version'], /invalid value "soon" for --timeout: not a duration/, []],
    [['--format', 'yaml', 'version'], /must be one of table, json/, []],
  ] as [string[], RegExp, string[]][])('refuses %j', (argv, message, command) => {
    const err = usageError(argv);
    expect(err.message).toMatch(message);
    expect(err.command).toEqual(command);
  });

  it('ignores empty environment variables, and takes a dash-led token as a flag value', () => {
    expect(runResult(['version'], { CONTAINERD_NAMESPACE: '' }).globals.namespace).toBe('default');
    expect(runResult(['leases', 'create', '-x', '-1h']).flags.expires).toBe(-3_600_000);
  });
});

describe('helpText', () => {
  it('lists subcommands with aliases, flags and global flags', () => {
    const text = helpText(ROOT, GLOBAL_FLAGS, ['content']);
    expect(text).toMatch(/^Usage: berth content <command>/);
    expect(text).toContain('delete, del, remove, rm');
    expect(text).toContain('-a, --address PATH');
    expect(text).toContain('env BERTH_ADDRESS, CONTAINERD_ADDRESS');
  });

  it('shows a leaf command with its flags and arguments', () => {
    const text = helpText(ROOT, GLOBAL_FLAGS, ['leases', 'create']);
    expect(text).toMatch(/^Usage: berth leases create \[flags\] \[<key>=<value>\.\.\.\]/);
    expect(text).toContain('-x, --expires DURATION');
    expect(text).toContain('default 24h');
  });
});
