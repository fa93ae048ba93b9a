/** Human-readable sizes and durations as ctr prints them (docker/go-units). */

const DECIMAL_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];

/** Go's %.4g: four significant digits, trailing zeros dropped. */
function goG4(n: number): string {
  if (n === 0) return '0';
  let s = n.toPrecision(4);
  if (s.includes('e')) {
    const [mant, exp] = s.split('e') as [string, string];
    const m = mant.includes('.') ? mant.replace(/0+$/, '').replace(/\.$/, '') : mant;
    const e = Number(exp);
    return `${m}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  }
  if (s.includes('.')) s = s.replace(/0+$/, '').replace(/\.$/, '');
  return s;
}

/** units.HumanSize: decimal units, 4 significant digits ("1.235MB", "512B"). */
export function humanSize(bytes: number): string {
  let size = bytes;
  let i = 0;
  while (size >= 1000 && i < DECIMAL_UNITS.length - 1) {
    size /= 1000;
    i++;
  }
  return `${goG4(size)}${DECIMAL_UNITS[i]}`;
}

/** units.HumanDuration: "Less than a second", "5 seconds", "About an hour", "3 days"... */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(ms / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.trunc(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${Math.trunc(ms / 3_600_000 / 24 / 365)} years`;
}

/**
 * Go's time.RFC3339 (2006-01-02T15:04:05Z07:00, "Z" for UTC) at a zone offset in
 * minutes east of UTC; the local zone's by default, as ctr prints `.Local()` times.
 */
export function rfc3339Local(date: Date, offsetMinutes: number = -date.getTimezoneOffset()): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const t = new Date(date.getTime() + offsetMinutes * 60_000);
  const abs = Math.abs(offsetMinutes);
  const zone =
    offsetMinutes === 0 ? 'Z' : `${offsetMinutes > 0 ? '+' : '-'}${p(Math.trunc(abs / 60))}:${p(abs % 60)}`;
  return (
    `${p(t.getUTCFullYear(), 4)}-${p(t.getUTCMonth() + 1)}-${p(t.getUTCDate())}` +
    `T${p(t.getUTCHours())}:${p(t.getUTCMinutes())}:${p(t.getUTCSeconds())}${zone}`
  );
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go duration ("1h30m", "500ms", "2.5s", "0") into milliseconds; a bare
 * number is taken as seconds. Returns undefined when the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (s === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const sign = s.startsWith('-') ? -1 : 1;
  const body = s.replace(/^[-+]/, '');
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < body.length) {
    re.lastIndex = pos;
    const m = re.exec(body);
    if (!m) return undefined;
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  return pos === 0 ? undefined : sign * total;
}
