import { type FieldAdaptor, labelField, parseFilter, parseFilters } from '@berth/api';

interface Obj {
  name: string;
  labels: Record<string, string>;
}
const adapt =
  (o: Obj): FieldAdaptor =>
  (path) => {
    if (path[0] === 'name' && path.length === 1) return o.name;
    if (path[0] === 'labels') return labelField(o.labels, path);
    return undefined;
  };
const objs: Obj[] = [
  { name: 'alpha', labels: { tier: 'gold', 'io.x/k': 'v', empty: '' } },
  { name: 'beta', labels: { tier: 'silver' } },
  { name: 'gamma.1', labels: {} },
];
const matching = (filters: string[]) =>
  objs.filter((o) => parseFilters(filters).match(adapt(o))).map((o) => o.name);

test.each([
  [[], ['alpha', 'beta', 'gamma.1']],
  [[''], ['alpha', 'beta', 'gamma.1']],
  [['name==alpha'], ['alpha']],
  [['name!=alpha'], ['beta', 'gamma.1']],
  [['name~=^(al|be)'], ['alpha', 'beta']],
  [['labels.tier'], ['alpha', 'beta']],
  [['labels.empty'], ['alpha']],
  [['labels.tier==gold'], ['alpha']],
  [['labels."io.x/k"==v'], ['alpha']],
  [['labels.tier!=gold'], ['beta', 'gamma.1']],
  [['name~=a,labels.tier==silver'], ['beta']],
  [['name==alpha|name==beta'], ['alpha', 'beta']],
  [['name~=/^al/|name==beta'], ['alpha', 'beta']],
  [['labels.tier==gold|labels.tier==silver,name~=b'], ['alpha', 'beta']],
  [
    ['name==alpha', 'name==gamma.1'],
    ['alpha', 'gamma.1'],
  ],
  [['name=="gamma.1"'], ['gamma.1']],
  [['name~=/^g.*\\.1$/'], ['gamma.1']],
  [['name~=|a|'], ['alpha', 'beta', 'gamma.1']],
  [[' name == beta '], ['beta']],
  [['nothing'], []],
])('%j selects %j', (filters, expected) => {
  expect(matching(filters)).toEqual(expected);
});

test('quoted values decode Go escapes', () => {
  const f = parseFilter('name=="a\\tb\\x41\\u00e9"');
  expect(f.match(() => 'a\tbAé')).toBe(true);
});

test.each([
  ['name==', /expected value/],
  ['==x', /expected field/],
  ['name=x', /invalid operator/],
  ['name=="open', /not terminated/],
  ['name~=(', /invalid regular expression/],
  ['name==a b', /unexpected "b"/],
  ['name==a,', /expected field/],
  ['name=="\\q"', /invalid escape/],
])('%s is rejected as invalid argument naming the filter', (input, msg) => {
  expect(() => parseFilter(input)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  expect(() => parseFilter(input)).toThrow(msg);
  expect(() => parseFilter(input)).toThrow(input);
});
