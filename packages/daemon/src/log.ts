import { InvalidArgumentError } from '@berth/api';

/** logrus' levels, which containerd's --log-level accepts. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'panic'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const RANK: Record<LogLevel, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, fatal: 5, panic: 6 };

/** Parses a level name as logrus does (`warning` is `warn`); InvalidArgument naming the value. */
export function parseLogLevel(value: string): LogLevel {
  const v = value.trim().toLowerCase();
  if (v === 'warning') return 'warn';
  if ((LOG_LEVELS as readonly string[]).includes(v)) return v as LogLevel;
  throw new InvalidArgumentError(`not a valid log level: "${value}" (one of ${LOG_LEVELS.join(', ')})`);
}

export type Fields = Record<string, string | number | boolean | undefined>;

export interface Logger {
  with(fields: Fields): Logger;
  enabled(level: LogLevel): boolean;
  trace(msg: string): void;
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

const BARE = /^[A-Za-z0-9_.:/@+-]+$/;
const quote = (v: string): string => (BARE.test(v) ? v : JSON.stringify(v));

/** Formats one logfmt line: time, level, msg, then the fields in the order given. */
export function formatLine(time: Date, level: LogLevel, msg: string, fields: Fields): string {
  let line = `time="${time.toISOString()}" level=${level === 'warn' ? 'warning' : level} msg=${JSON.stringify(msg)}`;
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    line += ` ${k}=${quote(String(v))}`;
  }
  return `${line}\n`;
}

interface Sink {
  level: LogLevel;
  write(line: string): void;
}

class LineLogger implements Logger {
  constructor(
    private readonly sink: Sink,
    private readonly fields: Fields,
  ) {}

  with(fields: Fields): Logger {
    return new LineLogger(this.sink, { ...this.fields, ...fields });
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.sink.level];
  }

  private log(level: LogLevel, msg: string): void {
    if (this.enabled(level)) this.sink.write(formatLine(new Date(), level, msg, this.fields));
  }

  trace(msg: string): void {
    this.log('trace', msg);
  }
  debug(msg: string): void {
    this.log('debug', msg);
  }
  info(msg: string): void {
    this.log('info', msg);
  }
  warn(msg: string): void {
    this.log('warn', msg);
  }
  error(msg: string): void {
    this.log('error', msg);
  }
}

export interface RootLogger extends Logger {
  setLevel(level: LogLevel): void;
}

/** A logger writing logfmt lines through `write` (stderr by default). */
export function createLogger(
  level: LogLevel = 'info',
  write: (line: string) => void = (line) => process.stderr.write(line),
): RootLogger {
  const sink: Sink = { level, write };
  const logger = new LineLogger(sink, {}) as LineLogger & RootLogger;
  logger.setLevel = (l: LogLevel) => {
    sink.level = l;
  };
  return logger;
}

export const nullLogger: Logger = {
  with: () => nullLogger,
  enabled: () => false,
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};
