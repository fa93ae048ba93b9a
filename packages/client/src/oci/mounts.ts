import { posix } from 'node:path';
import { InvalidArgumentError } from '@berth/api';
import type { SpecOpt } from './spec';
import type { Mount } from './types';

// One CSV record as Go's encoding/csv reads it: fields split on commas, a field may be
// double-quoted with "" for a quote inside, a quote inside an unquoted field is an error.
function splitCsv(record: string, what: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (record[i] === '"') {
      i++;
      for (;;) {
        if (i >= record.length) throw new InvalidArgumentError(`invalid mount "${what}": unterminated quote`);
        if (record[i] === '"') {
          if (record[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += record[i++];
      }
      if (i < record.length && record[i] !== ',') {
        throw new InvalidArgumentError(`invalid mount "${what}": extraneous text after a quoted field`);
      }
    } else {
      const end = record.indexOf(',', i);
      field = record.slice(i, end < 0 ? record.length : end);
      if (field.includes('"')) throw new InvalidArgumentError(`invalid mount "${what}": bare " in a field`);
      i += field.length;
    }
    fields.push(field);
    if (i >= record.length) return fields;
    i++; // the comma
  }
}

/**
 * A `--mount` flag as ctr takes it: `type=bind,src=/host,dst=/in,options=rbind:ro`
 * (`source`/`src`, `destination`/`dst`, options separated by colons, CSV quoting allowed).
 */
export function parseMountFlag(flag: string): Mount {
  if (flag.trim() === '') throw new InvalidArgumentError('invalid mount "": empty');
  const mount: Mount = { destination: '' };
  for (const field of splitCsv(flag, flag)) {
    const eq = field.indexOf('=');
    if (eq < 0) throw new InvalidArgumentError(`invalid mount "${flag}": expected key=val, got "${field}"`);
    const key = field.slice(0, eq);
    const value = field.slice(eq + 1);
    switch (key) {
      case 'type':
        mount.type = value;
        break;
      case 'source':
      case 'src':
        mount.source = value;
        break;
      case 'destination':
      case 'dst':
        mount.destination = value;
        break;
      case 'options':
        mount.options = value.split(':');
        break;
      default:
        throw new InvalidArgumentError(`invalid mount "${flag}": option "${key}" not supported`);
    }
  }
  if (mount.destination === '') throw new InvalidArgumentError(`invalid mount "${flag}": no destination`);
  // Key order as containerd writes it, whatever the order of the flag.
  const { destination, type, source, options } = mount;
  return {
    destination,
    ...(type !== undefined && type !== '' ? { type } : {}),
    ...(source !== undefined && source !== '' ? { source } : {}),
    ...(options ? { options } : {}),
  };
}

/** Appends mounts after the defaults (so they win over a default at the same destination). */
export function withMounts(mounts: readonly Mount[]): SpecOpt {
  return (spec) => {
    if (mounts.length === 0) return;
    spec.mounts = [...(spec.mounts ?? []), ...mounts.map((m) => ({ ...m }))];
  };
}

/** Removes the mounts at these destinations. */
export function withoutMounts(...destinations: string[]): SpecOpt {
  return (spec) => {
    const kept = (spec.mounts ?? []).filter((m) => !destinations.includes(cleanPath(m.destination)));
    if (kept.length > 0) spec.mounts = kept;
    else delete spec.mounts;
  };
}

// Go's filepath.Clean: normalized, without a trailing slash.
function cleanPath(p: string): string {
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

function hostFile(path: string): SpecOpt {
  return withMounts([{ destination: path, type: 'bind', source: path, options: ['rbind', 'ro'] }]);
}

/** The host's /etc/hosts, read-only (for a container in the host's network namespace). */
export const withHostHostsFile: SpecOpt = hostFile('/etc/hosts');
/** The host's /etc/resolv.conf, read-only. */
export const withHostResolvconf: SpecOpt = hostFile('/etc/resolv.conf');
/** The host's /etc/localtime, read-only. */
export const withHostLocaltime: SpecOpt = hostFile('/etc/localtime');
