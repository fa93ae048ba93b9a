import { createHash } from 'node:crypto';
import { InvalidArgumentError } from './errors';

export type Digest = string;

const HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

export interface ParsedDigest {
  algorithm: 'sha256' | 'sha384' | 'sha512';
  hex: string;
}

/** Parses `algorithm:hex`; InvalidArgument naming the value when it is malformed. */
export function parseDigest(value: string): ParsedDigest {
  const i = value.indexOf(':');
  if (i <= 0) throw new InvalidArgumentError(`invalid digest "${value}": missing algorithm`);
  const algorithm = value.slice(0, i);
  const hex = value.slice(i + 1);
  const len = HEX_LENGTH[algorithm];
  if (len === undefined) throw new InvalidArgumentError(`invalid digest "${value}": unsupported algorithm`);
  if (hex.length !== len || !/^[a-f0-9]+$/.test(hex)) {
    throw new InvalidArgumentError(`invalid digest "${value}": invalid checksum digest format`);
  }
  return { algorithm: algorithm as ParsedDigest['algorithm'], hex };
}

export function validateDigest(value: string): Digest {
  parseDigest(value);
  return value;
}

export function digestOf(data: Buffer | string, algorithm: ParsedDigest['algorithm'] = 'sha256'): Digest {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}
