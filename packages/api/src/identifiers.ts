import { InvalidArgumentError } from './errors';

// containerd's identifier rule: alphanumerics joined by single '.', '_' or '-'.
const IDENTIFIER = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;
export const MAX_IDENTIFIER_LENGTH = 76;

/** Validates a namespace, container, lease or snapshotter identifier. */
export function validateIdentifier(value: string, what = 'identifier'): void {
  if (value === '') throw new InvalidArgumentError(`${what} must not be empty`);
  if (value.length > MAX_IDENTIFIER_LENGTH) {
    throw new InvalidArgumentError(
      `${what} "${value}" greater than maximum length (${MAX_IDENTIFIER_LENGTH} characters)`,
    );
  }
  if (!IDENTIFIER.test(value)) {
    throw new InvalidArgumentError(`${what} "${value}" must match ${IDENTIFIER.source}`);
  }
}
