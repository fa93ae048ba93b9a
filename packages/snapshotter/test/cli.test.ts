import { parseServeArgs, UsageError } from '../src/cli';

describe('berth-snapshotter arguments', () => {
  it('reads serve flags, in both spellings, with overlayfs by default', () => {
    expect(parseServeArgs(['serve', '--root', '/r', '--address', '/s.sock'])).toEqual({
      root: '/r',
      address: '/s.sock',
      type: 'overlayfs',
    });
    expect(parseServeArgs(['serve', '--root=/r', '--address=/s.sock', '--type=native'])).toEqual({
      root: '/r',
      address: '/s.sock',
      type: 'native',
    });
    expect(parseServeArgs(['serve', '--help'])).toBe('help');
    expect(parseServeArgs(['-h'])).toBe('help');
  });

  it.each([
    [[], 'no command given'],
    [['run'], 'unknown command "run"'],
    [['serve', '--address', '/s'], '--root is required'],
    [['serve', '--root', '/r'], '--address is required'],
    [['serve', '--root'], '--root needs a value'],
    [['serve', '--root=', '--address', '/s'], '--root needs a value'],
    [
      ['serve', '--root', '/r', '--address', '/s', '--type', 'zfs'],
      'unknown snapshotter type "zfs": expected overlayfs or native',
    ],
    [['serve', '--root', '/r', '--address', '/s', 'extra'], 'unknown argument "extra"'],
  ])('refuses %j: %s', (argv, message) => {
    expect(() => parseServeArgs(argv as string[])).toThrow(new UsageError(message));
  });
});
