import { criLogUri, InvalidArgumentError, parseCriLogUri } from '@berth/api';
import { criLogOf, resolveStdio } from '../src';

const paths = (stdout: string, stderr = stdout, stdin = '') => ({ stdin, stdout, stderr, terminal: false });

describe('cri-log:// stdio URI', () => {
  it('round-trips a path with spaces and percent signs, and the line size', () => {
    const uri = criLogUri({ path: '/var/log/pods/ns_p 1_u/c/0%.log', maxLineSize: 16384 });
    expect(uri).toBe('cri-log:///var/log/pods/ns_p%201_u/c/0%25.log?max_line_size=16384');
    expect(parseCriLogUri(uri)).toEqual({ path: '/var/log/pods/ns_p 1_u/c/0%.log', maxLineSize: 16384 });
    expect(parseCriLogUri('cri-log:///a.log?max_line_size=-1')).toEqual({ path: '/a.log', maxLineSize: -1 });
  });

  it('is resolved by the shim with stdin still a FIFO path and stderr the same file', () => {
    const uri = 'cri-log:///tmp/x/0.log?max_line_size=10';
    const r = resolveStdio(paths(uri, uri, 'fifo:///run/io/c-stdin'));
    expect(r).toEqual({ stdin: '/run/io/c-stdin', stdout: uri, stderr: uri, terminal: false });
    expect(criLogOf(r)).toEqual({ path: '/tmp/x/0.log', maxLineSize: 10 });
    // A terminal has no stderr.
    expect(criLogOf(resolveStdio({ ...paths(uri, ''), terminal: true }))?.path).toBe('/tmp/x/0.log');
    expect(criLogOf(resolveStdio(paths('/run/io/c-stdout')))).toBeUndefined();
  });

  it.each([
    ['cri-log://relative/0.log?max_line_size=1', 'must be absolute'],
    ['cri-log://?max_line_size=1', 'no log path'],
    ['cri-log:///a.log', 'max_line_size is missing'],
    ['cri-log:///a.log?max_line_size=', 'max_line_size "" is not an integer'],
    ['cri-log:///a.log?max_line_size=12k', 'max_line_size "12k" is not an integer'],
    ['cri-log:///a.log?max_line_size=1.5', 'max_line_size "1.5" is not an integer'],
    ['cri-log:///a.log?max_line_size=1&rotate=yes', 'unknown parameter "rotate"'],
    ['cri-log:///a/%zz.log?max_line_size=1', 'not valid percent-encoding'],
    ['cri-log:///a/../etc/passwd?max_line_size=1', 'must not hold ".."'],
    ['cri-log:///a%00b?max_line_size=1', 'NUL byte'],
  ])('refuses %s as InvalidArgument naming it', (uri, why) => {
    let err: unknown;
    try {
      resolveStdio(paths(uri));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toContain(JSON.stringify(uri));
    expect((err as Error).message).toContain(why);
  });

  it('refuses a stderr that names another destination', () => {
    const uri = 'cri-log:///a.log?max_line_size=1';
    expect(() => resolveStdio(paths(uri, '/run/io/c-stderr'))).toThrow(
      new InvalidArgumentError(
        `stdio stderr "/run/io/c-stderr": must be empty or the stdout URI ${JSON.stringify(uri)}`,
      ),
    );
  });

  it('criLogUri refuses a relative path or a fractional size', () => {
    expect(() => criLogUri({ path: 'x.log', maxLineSize: 1 })).toThrow(InvalidArgumentError);
    expect(() => criLogUri({ path: '/x.log', maxLineSize: 1.5 })).toThrow(InvalidArgumentError);
  });
});
