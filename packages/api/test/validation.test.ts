import {
  AlreadyExistsError,
  applyLabelPaths,
  digestOf,
  FailedPreconditionError,
  fromGrpcStatus,
  GrpcCode,
  NotFoundError,
  parseDigest,
  requireNamespace,
  toGrpcStatus,
  UnavailableError,
  validateIdentifier,
  validateLabels,
} from '@berth/api';

describe('identifiers', () => {
  test.each(['default', 'k8s.io', 'a-b_c.d', 'A1', 'x'.repeat(76)])('%s is valid', (id) => {
    expect(() => validateIdentifier(id)).not.toThrow();
  });
  test.each(['', '-a', 'a-', 'a..b', 'has space', 'Bad_Name!', 'x'.repeat(77)])('%j is invalid', (id) => {
    expect(() => validateIdentifier(id)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
  test('the message names the value', () => {
    expect(() => validateIdentifier('Bad_Name!')).toThrow(
      'identifier "Bad_Name!" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$',
    );
  });
});

describe('labels', () => {
  test('a key and value over 4096 bytes is refused, naming the key', () => {
    expect(() => validateLabels({ big: 'x'.repeat(4094) })).toThrow(
      /maximum size \(4096 bytes\), key: "big"/,
    );
    expect(() => validateLabels({ big: 'x'.repeat(4093) })).not.toThrow();
    expect(() => validateLabels({ '': 'v' })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
    );
  });
  test('field paths: none replaces all, labels.k sets or removes one, others are ignored', () => {
    const cur = { a: '1', b: '2' };
    expect(applyLabelPaths(cur, { c: '3' }, [])).toEqual({ c: '3' });
    expect(applyLabelPaths(cur, { c: '3' }, ['labels'])).toEqual({ c: '3' });
    expect(applyLabelPaths(cur, { a: '9' }, ['labels.a'])).toEqual({ a: '9', b: '2' });
    expect(applyLabelPaths(cur, {}, ['labels.b'])).toEqual({ a: '1' });
    expect(applyLabelPaths(cur, { x: 'y' }, ['name'])).toBeUndefined();
    expect(cur).toEqual({ a: '1', b: '2' });
  });
});

describe('digests', () => {
  test('well-formed digests parse', () => {
    const d = digestOf('hello');
    expect(d).toBe('sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
    expect(parseDigest(d)).toEqual({ algorithm: 'sha256', hex: d.slice(7) });
  });
  test.each([
    'sha256',
    'sha256:xyz',
    `md5:${'a'.repeat(32)}`,
    `sha256:${'A'.repeat(64)}`,
    `sha256:${'a'.repeat(63)}`,
  ])('%s is an invalid argument naming the value', (d) => {
    expect(() => parseDigest(d)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => parseDigest(d)).toThrow(d);
  });
});

describe('errors cross the gRPC edge with their kind', () => {
  test.each([
    [new NotFoundError('content x: not found'), GrpcCode.NOT_FOUND, 'ERR_NOT_FOUND'],
    [new AlreadyExistsError('x'), GrpcCode.ALREADY_EXISTS, 'ERR_ALREADY_EXISTS'],
    [new FailedPreconditionError('x'), GrpcCode.FAILED_PRECONDITION, 'ERR_FAILED_PRECONDITION'],
    [new UnavailableError('x'), GrpcCode.UNAVAILABLE, 'ERR_UNAVAILABLE'],
  ])('%s', (err, code, back) => {
    const status = toGrpcStatus(err);
    expect(status).toEqual({ code, details: err.message });
    const again = fromGrpcStatus(status);
    expect(again.code).toBe(back);
    expect(again.message).toBe(err.message);
  });
  test('a plain Error becomes UNKNOWN with its message', () => {
    expect(toGrpcStatus(new Error('boom'))).toEqual({ code: GrpcCode.UNKNOWN, details: 'boom' });
  });
  test('a missing namespace is a failed precondition', () => {
    expect(() => requireNamespace({})).toThrow(expect.objectContaining({ code: 'ERR_FAILED_PRECONDITION' }));
    expect(requireNamespace({ namespace: 'default' })).toBe('default');
    expect(() => requireNamespace({ namespace: 'no way' })).toThrow(/identifier "no way"/);
  });
});
