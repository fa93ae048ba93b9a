/**
 * The shim's log: logrus-style text lines on stderr, which `start` points at the bundle's
 * `log` FIFO (containerd copies it into its own log). Writes never throw: a daemon that
 * went away must not take the shim with it.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

function quote(v: unknown): string {
  const s = v instanceof Error ? v.message : String(v);
  return /^[A-Za-z0-9_./:-]+$/.test(s) ? s : JSON.stringify(s);
}

export function createLogger(
  write: (line: string) => void,
  debug: boolean,
  base: Record<string, unknown> = {},
): Logger {
  const log = (level: Level, msg: string, fields?: Record<string, unknown>): void => {
    if (level === 'debug' && !debug) return;
    let line = `time="${new Date().toISOString()}" level=${level} msg=${quote(msg)}`;
    for (const [k, v] of Object.entries({ ...base, ...fields })) {
      if (v !== undefined) line += ` ${k}=${quote(v)}`;
    }
    try {
      write(`${line}\n`);
    } catch {
      // nowhere left to report it
    }
  };
  return {
    debug: (m, f) => log('debug', m, f),
    info: (m, f) => log('info', m, f),
    warn: (m, f) => log('warn', m, f),
    error: (m, f) => log('error', m, f),
  };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
