/**
 * Property-based tests (fast-check) of the parsers every API entry runs on client input:
 * digests, filters, identifiers and labels. Whatever a client sends, the answer is a value
 * or an InvalidArgumentError naming the input: never another exception, never a hang.
 * Bounded in count and time so they run in every CI.
 */
import fc from 'fast-check';
import {
  InvalidArgumentError,
  parseDigest,
  parseFilter,
  parseFilters,
  validateIdentifier,
  validateLabel,
} from '../src';

const RUNS = { numRuns: 1000, interruptAfterTimeLimit: 10_000 };

/** Runs fn; true when it returned, false when it threw InvalidArgumentError; rethrows the rest. */
function acceptsOrRefuses(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if (err instanceof InvalidArgumentError) return false;
    throw err;
  }
}

const HEX = '0123456789abcdef';
const hexString = (n: number) => fc.string({ unit: fc.constantFrom(...HEX), minLength: n, maxLength: n });

describe('parseDigest', () => {
  test('any string parses to itself or is InvalidArgument naming it', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' })), (s) => {
        try {
          const d = parseDigest(s);
          expect(`${d.algorithm}:${d.hex}`).toBe(s);
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidArgumentError);
          expect((err as Error).message).toContain(`invalid digest "${s}"`);
        }
      }),
      RUNS,
    );
  });

  test('every well-formed digest parses, and one wrong character refuses it', () => {
    const algos = fc.constantFrom(['sha256', 64] as const, ['sha384', 96] as const, ['sha512', 128] as const);
    fc.assert(
      fc.property(
        algos.chain(([a, n]) => fc.tuple(fc.constant(a), hexString(n), fc.nat(n - 1))),
        ([algorithm, hex, at]) => {
          expect(parseDigest(`${algorithm}:${hex}`)).toEqual({ algorithm, hex });
          const bad = `${hex.slice(0, at)}G${hex.slice(at + 1)}`;
          expect(() => parseDigest(`${algorithm}:${bad}`)).toThrow(InvalidArgumentError);
        },
      ),
      RUNS,
    );
  });
});

/** Strings made of the filter language's own characters, so the parser's paths are all taken. */
const filterish = fc.string({
  unit: fc.constantFrom(...'abcxyz09_.,|=!~"\'\\ ()[]*+?^$-@/:'.split('')),
  maxLength: 40,
});

describe('filters', () => {
  test('any input parses or is InvalidArgument; a parsed filter matches any object without throwing', () => {
    const fields = fc.dictionary(fc.constantFrom('a', 'b', 'x', 'labels'), fc.string({ maxLength: 20 }));
    fc.assert(
      fc.property(fc.oneof(filterish, fc.string()), fields, (input, obj) => {
        let filter: ReturnType<typeof parseFilter> | undefined;
        if (!acceptsOrRefuses(() => (filter = parseFilter(input)))) return;
        const adaptor = (path: readonly string[]) => obj[path[0]!];
        expect(typeof filter!.match(adaptor)).toBe('boolean');
      }),
      RUNS,
    );
  });

  test('a quoted equality selector matches exactly the value it names', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), fc.string({ maxLength: 30 }), (value, other) => {
        const quoted = JSON.stringify(value);
        const f = parseFilters([`name==${quoted}`]);
        expect(f.match((p) => (p[0] === 'name' ? value : undefined))).toBe(true);
        expect(f.match((p) => (p[0] === 'name' ? other : undefined))).toBe(other === value);
      }),
      RUNS,
    );
  });

  test('a regular expression cannot block the caller (RE2, linear time, as containerd)', () => {
    // With JavaScript's backtracking RegExp this match takes longer than any test timeout.
    const f = parseFilter('labels.a~=^(a+)+$');
    expect(f.match(() => `${'a'.repeat(64)}b`)).toBe(false);
    expect(f.match(() => 'aaaa')).toBe(true);
    // Go's regexp syntax: Perl lookarounds are refused, as containerd refuses them.
    expect(() => parseFilter('name~=(?=a)')).toThrow(InvalidArgumentError);
  });
});

describe('identifiers and labels', () => {
  test('any identifier is accepted or refused with InvalidArgument', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,80}$/)), (s) => {
        acceptsOrRefuses(() => validateIdentifier(s));
      }),
      RUNS,
    );
  });

  test('any label is accepted or refused with InvalidArgument', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 5000 }), fc.string({ maxLength: 5000 }), (k, v) => {
        acceptsOrRefuses(() => validateLabel(k, v));
      }),
      { ...RUNS, numRuns: 500 },
    );
  });
});
