import { Failpoint, FailpointError, Failpoints, InvalidArgumentError, parseFailpointTerms } from '../src';

describe('failpoint terms (containerd syntax)', () => {
  test('parse every type, cascading with ->', () => {
    expect(parseFailpointTerms('1*off->2*error(oops)->1*delay(15)->1*panic(boom)')).toEqual([
      { type: 'off', count: 1 },
      { type: 'error', count: 2, arg: 'oops' },
      { type: 'delay', count: 1, ms: 15 },
      { type: 'panic', count: 1, arg: 'boom' },
    ]);
  });

  test.each([
    ['', /expected a count/],
    ['error(x)', /expected a count/],
    ['1*nope', /unknown type/],
    ['1*error()', /needs an argument/],
    ['1*delay(x)', /expected milliseconds/],
    ['1*off-2*off', /expected "->"/],
    ['1*off->', /expected a count/],
  ])('%j is InvalidArgument', (terms, message) => {
    expect(() => parseFailpointTerms(terms)).toThrow(InvalidArgumentError);
    expect(() => parseFailpointTerms(terms)).toThrow(message);
  });

  test('each evaluation spends the first term with a count left', async () => {
    const fp = new Failpoint('x', '1*off->2*error(oops)->1*delay(1)');
    await fp.evaluate();
    await expect(fp.evaluate()).rejects.toThrow(new FailpointError('oops', { failpoint: 'x' }));
    expect(fp.marshal()).toBe('0*off->1*error(oops)->1*delay(1)');
    await expect(fp.evaluate()).rejects.toBeInstanceOf(FailpointError);
    await fp.evaluate();
    expect(fp.evaluate()).toBeUndefined();
    expect(fp.marshal()).toBe('0*off->0*error(oops)->0*delay(1)');
  });
});

describe('Failpoints', () => {
  test('parses name=terms;name=terms and evaluates by name; unknown names are off', async () => {
    const fps = Failpoints.parse(' a=1*error(first) ; b=1*off->1*error(second);');
    expect(fps.size).toBe(2);
    expect(fps.at('c')).toBeUndefined();
    await expect(fps.at('a')).rejects.toMatchObject({ failpoint: 'a', message: 'first' });
    expect(fps.at('a')).toBeUndefined();
    expect(fps.at('b')).toBeUndefined();
    await expect(fps.at('b')).rejects.toMatchObject({ message: 'second' });
  });

  test('a malformed entry names itself', () => {
    expect(() => Failpoints.parse('a')).toThrow('invalid failpoint "a": expected <name>=<terms>');
    expect(() => Failpoints.parse('a=1*bad')).toThrow(/invalid failpoint terms "1\*bad"/);
  });
});
