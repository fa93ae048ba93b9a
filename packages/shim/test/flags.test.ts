import { parseFlags } from '../src/flags';

test('reads flags the way Go flag does: -name value, -name=value, --name, bare booleans, then the action', () => {
  const f = parseFlags(['-namespace', 'default', '--id=web', '-address', '/run/c.sock', '-debug', 'start']);
  expect(f).toMatchObject({
    namespace: 'default',
    id: 'web',
    address: '/run/c.sock',
    debug: true,
    action: 'start',
  });
  expect(f.publishBinary).toBe('containerd');
  expect(parseFlags(['-v']).version).toBe(true);
  expect(parseFlags(['-debug=false', 'delete'])).toMatchObject({ debug: false, action: 'delete' });
  expect(parseFlags(['-bundle', '/b', '--', '-id'])).toMatchObject({ bundle: '/b', action: '-id', id: '' });
  expect(parseFlags([]).action).toBe('');
});

test('names the flag that is unknown, lacks its value or has a bad boolean', () => {
  expect(() => parseFlags(['-nope'])).toThrow('flag provided but not defined: -nope');
  expect(() => parseFlags(['-id'])).toThrow('flag needs an argument: -id');
  expect(() => parseFlags(['-debug=maybe'])).toThrow('invalid boolean value "maybe" for -debug');
});
