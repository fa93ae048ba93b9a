import type { Readable, Writable } from 'node:stream';
import type { Context } from '@berth/api';
import type { Client } from '@berth/client';

export type OutputFormat = 'table' | 'json';

/** Where a command reads and writes; main() passes the process's, tests their own. */
export interface Io {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}

export interface Session {
  client: Client;
  ctx: Context;
}

/** What every command receives besides its own flags and arguments. */
export interface Globals {
  address: string;
  namespace: string;
  format: OutputFormat;
  /** 0: no timeout. */
  timeoutMs: number;
  io: Io;
  /** Connects on first use (loading gRPC only then); main closes it. */
  session(): Session;
}

/** An error already reported on stderr: exit 1 (or exitCode) without printing it again. */
export class ReportedError extends Error {
  /** `exitCode`: what berth exits with, e.g. a container's exit status (`run`, `tasks exec`). */
  constructor(readonly exitCode = 1) {
    super('reported');
    this.name = 'ReportedError';
  }
}

export function print(g: Globals, text: string): void {
  g.io.stdout.write(text);
}

/** Machine-readable output: one JSON document, dates as RFC 3339 strings. */
export function printJson(g: Globals, value: unknown): void {
  g.io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** `key=value` strings to labels as ctr's LabelArgs: a bare key means "true". */
export function labelArgs(args: readonly string[], bare = 'true'): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq === -1) labels[a] = bare;
    else labels[a.slice(0, eq)] = a.slice(eq + 1);
  }
  return labels;
}

/** Labels as ctr shows them: k=v sorted, joined by commas. */
export function formatLabels(labels: Record<string, string>, empty = ''): string {
  const pairs = Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .sort();
  return pairs.length ? pairs.join(',') : empty;
}

/** Loads @berth/api only when a command needs it (it brings in the proto loader). */
export function api(): typeof import('@berth/api') {
  return require('@berth/api') as typeof import('@berth/api');
}
