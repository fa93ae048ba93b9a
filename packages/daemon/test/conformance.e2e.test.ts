/**
 * containerd's own content and snapshotter test suites (containerd 1.6's Go client, from
 * Debian's golang-github-containerd-containerd-dev) run against berthd over gRPC, through
 * the kit in ../shared/conformance beside the repository. Our own suites agree with our
 * own client by construction; these are what a client nobody here wrote sends.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Daemon, repoRoot, startBerthd } from '@berth/testkit';

const kit = join(repoRoot, '..', 'shared', 'conformance', 'run.sh');
const haveKit = existsSync(kit);
if (!haveKit) {
  // CI clones the repository with shared/ beside it; a checkout without it cannot run these.
  process.stderr.write(`conformance: ${kit} not found, skipping containerd's suites\n`);
}

interface SuiteResult {
  passed: string[];
  failed: string[];
  output: string;
}

/** Runs the kit (it builds the Go test binary once, with apt-installed Go, on first use). */
function runSuite(socket: string, args: string[]): Promise<SuiteResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [kit, socket, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => {
      output += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      output += b.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) {
        reject(new Error(`run.sh ${args.join(' ')} exited ${code}:\n${output}`));
        return;
      }
      const names = (status: string) =>
        [...output.matchAll(new RegExp(`^--- ${status}: (\\S+)`, 'gm'))].map((m) => m[1]!);
      resolve({ passed: names('PASS'), failed: names('FAIL'), output });
    });
  });
}

(haveKit ? describe : describe.skip)("containerd's own suites against berthd", () => {
  let daemon: Daemon;
  beforeAll(async () => {
    daemon = await startBerthd();
  });
  afterAll(async () => {
    await daemon?.dispose();
  });

  test('content: all 14 cases pass', async () => {
    const r = await runSuite(daemon.address, ['content']);
    expect({ failed: r.failed, output: r.failed.length ? r.output : '' }).toEqual({ failed: [], output: '' });
    expect(r.passed.filter((n) => n.includes('/'))).toHaveLength(14);
  }, 900_000);

  test.each(['overlayfs', 'native'])(
    'snapshotter %s: all 20 cases pass (Rename is skipped by the suite itself, as on containerd)',
    async (sn) => {
      const r = await runSuite(daemon.address, ['snapshotter', sn]);
      expect({ failed: r.failed, output: r.failed.length ? r.output : '' }).toEqual({
        failed: [],
        output: '',
      });
      expect(r.passed.filter((n) => n.startsWith('TestSnapshotter/'))).toHaveLength(20);
    },
    900_000,
  );
});
