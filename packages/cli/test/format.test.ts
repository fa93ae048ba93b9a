import {
  CTR_PLUGINS,
  CTR_SPACES,
  CTR_TABS,
  formatTable,
  humanDuration,
  humanSize,
  parseDuration,
  rfc3339Local,
} from '@berth/cli';

describe('formatTable (Go text/tabwriter semantics)', () => {
  it('pads each column to its widest cell plus padding', () => {
    expect(formatTable('a\tbb\t\nccc\td\t\n', CTR_SPACES)).toBe('a   bb \nccc d  \n');
  });

  it('leaves the text after the last tab out of any column', () => {
    expect(formatTable('A\tLABELS\nlonger\tx=1,y=2\n', CTR_SPACES)).toBe('A      LABELS\nlonger x=1,y=2\n');
  });

  it('aligns a column only over the consecutive lines that have it', () => {
    const text = 'x\ty\t\nsingle line\nlong-cell\tz\t\n';
    expect(formatTable(text, CTR_SPACES)).toBe('x y \nsingle line\nlong-cell z \n');
  });

  it('respects the minimal width and padding (ctr plugins table)', () => {
    expect(formatTable('T\tID\t\nab\tc\t\n', CTR_PLUGINS)).toBe('T     ID    \nab    c     \n');
  });

  it('pads with tabs to tab stops when the pad char is a tab (ctr content tables)', () => {
    // Column width 11 rounds up to 16: "DIGEST" needs 2 tabs, "sha256:abc" 1.
    expect(formatTable('DIGEST\tSIZE\nsha256:abc\t6B\n', CTR_TABS)).toBe('DIGEST\t\tSIZE\nsha256:abc\t6B\n');
  });

  it('counts characters, not bytes', () => {
    expect(formatTable('é\tx\t\nab\ty\t\n', CTR_SPACES)).toBe('é  x \nab y \n');
  });

  it('keeps a missing final newline missing, and empty input empty', () => {
    expect(formatTable('a\tb', CTR_SPACES)).toBe('a b');
    expect(formatTable('', CTR_SPACES)).toBe('');
  });
});

describe('humanSize (go-units HumanSize)', () => {
  it.each([
    [0, '0B'],
    [5, '5B'],
    [999, '999B'],
    [1000, '1kB'],
    [1234, '1.234kB'],
    [12_345, '12.35kB'],
    [999_999, '1000kB'],
    [1_500_000, '1.5MB'],
    [3_000_000, '3MB'],
    [16_777_216, '16.78MB'],
    [2e12, '2TB'],
  ])('%d -> %s', (n, text) => {
    expect(humanSize(n)).toBe(text);
  });
});

describe('humanDuration (go-units HumanDuration)', () => {
  const s = 1000;
  const h = 3600 * s;
  it.each([
    [0, 'Less than a second'],
    [999, 'Less than a second'],
    [1 * s, '1 second'],
    [59 * s, '59 seconds'],
    [60 * s, 'About a minute'],
    [119 * s, 'About a minute'],
    [5 * 60 * s, '5 minutes'],
    [60 * 60 * s, 'About an hour'],
    [89 * 60 * s, 'About an hour'],
    [91 * 60 * s, '2 hours'],
    [47 * h, '47 hours'],
    [3 * 24 * h, '3 days'],
    [20 * 24 * h, '2 weeks'],
    [90 * 24 * h, '3 months'],
    [800 * 24 * h, '2 years'],
  ])('%d ms -> %s', (ms, text) => {
    expect(humanDuration(ms)).toBe(text);
  });
});

describe('parseDuration (Go durations)', () => {
  it.each([
    ['0', 0],
    ['10', 10_000],
    ['1.5', 1500],
    ['500ms', 500],
    ['2s', 2000],
    ['1.5s', 1500],
    ['1h30m', 5_400_000],
    ['24h', 86_400_000],
    ['1m0.5s', 60_500],
    ['100us', 0.1],
  ])('%s -> %d ms', (text, ms) => {
    expect(parseDuration(text)).toBeCloseTo(ms, 6);
  });

  it.each(['', 'abc', '1x', '1h 30m', 'h', '1.2.3s', 's1'])('refuses %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('rfc3339Local', () => {
  const at = new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678));

  it('writes Z for UTC', () => {
    expect(rfc3339Local(at, 0)).toBe('2024-01-02T03:04:05Z');
  });

  it('writes the time at the offset, and the offset', () => {
    expect(rfc3339Local(at, 330)).toBe('2024-01-02T08:34:05+05:30');
    expect(rfc3339Local(at, -240)).toBe('2024-01-01T23:04:05-04:00');
  });

  it('uses the local zone by default', () => {
    expect(rfc3339Local(at)).toBe(rfc3339Local(at, -at.getTimezoneOffset()));
  });
});
