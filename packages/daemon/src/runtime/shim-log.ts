import { constants, openSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { lstatQuiet } from '@berth/api';
import { mknod, S_IFIFO } from '@berth/sys';
import type { Logger, LogLevel } from '../log';
import { LOG_FILE } from './bundle';

type Level = Exclude<LogLevel, 'fatal' | 'panic'>;

const LEVELS: Record<string, Level> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warning: 'warn',
  warn: 'warn',
  error: 'error',
  fatal: 'error',
  panic: 'error',
};

const PAIR = /([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)/g;

const unquote = (v: string): string => {
  if (!v.startsWith('"')) return v;
  try {
    return JSON.parse(v) as string;
  } catch {
    return v.slice(1, -1);
  }
};

/**
 * Re-logs one line of a shim's logrus output at its level: its `msg` becomes the message,
 * its other fields stay fields; its own time is dropped. A line that is not logfmt is
 * logged as it is, at info.
 */
export function relayShimLogLine(log: Logger, line: string): void {
  if (line.trim() === '') return;
  const fields: Record<string, string> = {};
  for (const [, k, v] of line.matchAll(PAIR)) fields[k!] = unquote(v!);
  if (fields.msg === undefined) {
    if (log.enabled('info')) log.info(line.trim());
    return;
  }
  const level = LEVELS[fields.level ?? ''] ?? 'info';
  if (!log.enabled(level)) return;
  const { msg, level: _level, time: _time, ...rest } = fields;
  log.with(rest)[level](msg);
}

/** The read end of a bundle's shim log fifo; close() stops reading (the shim keeps running). */
export interface ShimLog {
  close(): void;
}

/**
 * Creates the bundle's `log` fifo (when missing) and reads it: the shim writes its log
 * there. Opened read-write and non-blocking, as containerd does, so neither side blocks
 * waiting for the other and a restarted berthd can pick the shim's log up again.
 */
export async function openShimLog(bundlePath: string, log: Logger): Promise<ShimLog> {
  const path = join(bundlePath, LOG_FILE);
  // lstatQuiet: a plain stat of a FIFO breaks later require()s (@berth/api special-files).
  if (lstatQuiet(path) === undefined) mknod(path, S_IFIFO | 0o700);
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  const socket = new Socket({ fd, readable: true, writable: false });
  let pending = '';
  socket.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) relayShimLogLine(log, line);
  });
  socket.on('error', () => {}); // the fifo going away is the end of the log, nothing more
  return {
    close: () => {
      if (pending !== '') relayShimLogLine(log, pending);
      pending = '';
      socket.destroy();
    },
  };
}
