import { InvalidArgumentError } from './errors';

// containerd's identifier rule: alphanumerics joined by single '.', '_' or '-'. The source
// text is containerd's too, because clients print it in the error.
const IDENTIFIER = /^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$/;
export const MAX_IDENTIFIER_LENGTH = 76;

/**
 * Validates a namespace, container, lease or snapshotter identifier. The messages are
 * containerd's word for word, so `ctr` shows the same error against berthd.
 */
export function validateIdentifier(value: string): void {
  if (value === '') throw new InvalidArgumentError('identifier must not be empty');
  if (value.length > MAX_IDENTIFIER_LENGTH) {
    throw new InvalidArgumentError(
      `identifier ${JSON.stringify(value)} greater than maximum length (${MAX_IDENTIFIER_LENGTH} characters)`,
    );
  }
  if (!IDENTIFIER.test(value)) {
    throw new InvalidArgumentError(`identifier ${JSON.stringify(value)} must match ${IDENTIFIER.source}`);
  }
}
