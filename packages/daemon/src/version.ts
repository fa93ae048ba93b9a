import { readFileSync } from 'node:fs';
import { join } from 'node:path';

function packageVersion(): string {
  try {
    // The same relative place from src/ and dist/.
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** berthd's version, as `berthd --version` and the Version service report it. */
export const VERSION = `v${packageVersion()}`;
/** The source revision, when the build recorded one (BERTH_REVISION at run time otherwise). */
export const REVISION = process.env.BERTH_REVISION ?? '';
export const PACKAGE = 'berth';
