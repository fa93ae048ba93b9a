import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './processes';

/** cri-tools 1.26.1's crictl from the shared kit beside the repository (../shared/tools). */
export const CRICTL = join(repoRoot, '..', 'shared', 'tools', 'crictl');

export const crictlInstalled = (): boolean => existsSync(CRICTL);

/** What a crictl run left: its exit code and output. */
export interface CrictlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The endpoint flags that point crictl's runtime and image clients at a daemon's socket. */
export function crictlEndpoint(address: string): string[] {
  const endpoint = `unix://${address}`;
  return ['--runtime-endpoint', endpoint, '--image-endpoint', endpoint];
}

/**
 * Runs crictl against the CRI on a daemon's socket (runtime and image endpoints alike) and
 * resolves with its exit code and output whatever the code; `timeout` is crictl's own, `input`
 * is written to its stdin (closed at once when there is none).
 */
export function crictl(
  address: string,
  args: readonly string[],
  timeout = '60s',
  input?: string,
): Promise<CrictlResult> {
  return new Promise((resolve) => {
    const child = execFile(
      CRICTL,
      [...crictlEndpoint(address), '--timeout', timeout, ...args],
      { maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(input);
  });
}
