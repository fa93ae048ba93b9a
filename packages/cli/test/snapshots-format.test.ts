import { NanoDate } from '@berth/api';
import { goJson, infoGoJson } from '../src/commands/snapshots';

describe('snapshots output as ctr prints it', () => {
  it('prints snapshots.Info as Go does: omitted empty fields, sorted labels, trimmed nanoseconds', () => {
    const text = infoGoJson({
      kind: 'committed',
      name: 'base',
      parent: '',
      labels: { zeta: '1', alpha: '<&>' },
      createdAt: new Date('2024-05-06T07:08:09.120Z'),
      updatedAt: new Date('2024-05-06T07:08:09.000Z'),
    });
    expect(text).toBe(
      [
        '{',
        '    "Kind": "Committed",',
        '    "Name": "base",',
        '    "Labels": {',
        '        "alpha": "\\u003c\\u0026\\u003e",',
        '        "zeta": "1"',
        '    },',
        '    "Created": "2024-05-06T07:08:09.12Z",',
        '    "Updated": "2024-05-06T07:08:09Z"',
        '}',
      ].join('\n'),
    );
    const child = JSON.parse(
      infoGoJson({
        kind: 'view',
        name: 'v',
        parent: 'base',
        labels: {},
        createdAt: new Date(0),
        updatedAt: new Date(0),
      }),
    );
    expect(child).toEqual({
      Kind: 'View',
      Name: 'v',
      Parent: 'base',
      Created: '1970-01-01T00:00:00Z',
      Updated: '1970-01-01T00:00:00Z',
    });
  });

  it('prints the nanoseconds a NanoDate carries', () => {
    const at = NanoDate.fromNanos(1_714_979_289_120_456_700n); // 2024-05-06T07:08:09.1204567Z
    const info = JSON.parse(
      infoGoJson({ kind: 'active', name: 'a', parent: '', labels: {}, createdAt: at, updatedAt: at }),
    );
    expect(info.Created).toBe('2024-05-06T07:08:09.1204567Z');
  });

  it('escapes HTML characters as encoding/json does', () => {
    expect(goJson({ a: 'x<y>&z' })).toBe('{\n    "a": "x\\u003cy\\u003e\\u0026z"\n}');
  });
});
