import { randomBytes } from 'node:crypto';
import { ResourceExhaustedError } from '@berth/api';

/** The kubelet's streaming request cache: tokens live a minute, at most 1000 wait at once. */
export const TOKEN_TTL_MS = 60_000;
export const MAX_IN_FLIGHT = 1000;
const TOKEN_BYTES = 8;

/**
 * Requests waiting for their client, each under a random URL-safe token that can be used once
 * and only until it expires (the kubelet's requestCache). When full, the expired entries go;
 * if none did, the insert is ResourceExhausted.
 */
export class TokenCache<T> {
  private readonly entries = new Map<string, { value: T; expires: number }>();

  constructor(
    private readonly ttlMs = TOKEN_TTL_MS,
    private readonly max = MAX_IN_FLIGHT,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  insert(value: T): string {
    this.evictExpired();
    if (this.entries.size >= this.max)
      throw new ResourceExhaustedError(
        `maximum number of in-flight streaming requests exceeded (${this.max})`,
      );
    let token: string;
    do token = randomBytes(TOKEN_BYTES).toString('base64url');
    while (this.entries.has(token));
    this.entries.set(token, { value, expires: this.now() + this.ttlMs });
    return token;
  }

  /** The request under `token`, removed: undefined when unknown, used or expired. */
  consume(token: string): T | undefined {
    const e = this.entries.get(token);
    if (!e) return undefined;
    this.entries.delete(token);
    return e.expires > this.now() ? e.value : undefined;
  }

  private evictExpired(): void {
    const now = this.now();
    // Insertion order is expiry order: stop at the first live one.
    for (const [token, e] of this.entries) {
      if (e.expires > now) break;
      this.entries.delete(token);
    }
  }
}
