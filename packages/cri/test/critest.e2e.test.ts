/**
 * Kubernetes' own CRI validation suite, critest v1.26.1, against bin/berthd through the
 * shared kit (../shared/cri/run-critest.sh: stand-in images on a loopback registry, the CNI
 * bridge, containerd's config.toml given to berthd as is). Each spec berthd must pass is a
 * test here, so a regression names the spec. Needs root, runc, the CNI plugins, the kit's
 * packages (it installs what is missing) and a build; about three minutes (two runs, one per
 * runtime handler).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '@berth/testkit';
import { ISSUE_10, ISSUE_11 } from './critest-specs';

const KIT = join(repoRoot, '..', 'shared', 'cri', 'run-critest.sh');
const CAN_RUN = process.getuid?.() === 0 && existsSync(KIT);
const describeIf = CAN_RUN ? describe : describe.skip;
/** Kept between runs so the stand-in images are built once (the kit rebuilds them when their inputs change). */
const STATE = join(tmpdir(), 'berth-critest-jest');

/** Spec name -> status, from the JUnit report critest wrote. */
function readJunit(file: string): Map<string, string> {
  const xml = readFileSync(file, 'utf8');
  const out = new Map<string, string>();
  const unescapeXml = (s: string) =>
    s
      .replaceAll('&#34;', '"')
      .replaceAll('&quot;', '"')
      .replaceAll('&#39;', "'")
      .replaceAll('&apos;', "'")
      .replaceAll('&lt;', '<')
      .replaceAll('&gt;', '>')
      .replaceAll('&amp;', '&');
  for (const m of xml.matchAll(/<testcase name="([^"]*)"[^>]*status="([^"]*)"/g)) {
    out.set(unescapeXml(m[1]!).replace(/^\[It\] /, ''), m[2]!);
  }
  return out;
}

/**
 * The kit's config makes `runc` (containerd-shim-runc-v2) the default handler, where berthd
 * copies logs from FIFOs as containerd does; berthd's own default is `berth` (berth's shim,
 * which writes the log itself and which Attach follows): critest runs once with each.
 */
const HANDLERS: [string, string[]][] = [
  ["the kit's default handler runc (containerd-shim-runc-v2)", []],
  ["handler berth (berth's shim)", ['--runtime-handler=berth']],
];

describeIf.each(HANDLERS)('critest v1.26.1 against berthd, %s', (_name, flags) => {
  let results = new Map<string, string>();
  let summary = '';

  beforeAll(() => {
    // One run at a time in one state directory (the images are built there once): each
    // handler's results are read into memory before the next run writes its report.
    const r = spawnSync('bash', [KIT, join(repoRoot, 'bin', 'berthd'), ...flags], {
      env: { ...process.env, BERTH_CRI_DIR: STATE },
      encoding: 'utf8',
      timeout: 25 * 60_000,
      maxBuffer: 64 << 20,
    });
    summary = (r.stdout ?? '').trim().split('\n').pop() ?? '';
    if (r.status !== 0) {
      throw new Error(
        `the critest kit failed (exit ${r.status ?? r.signal}):\n${(r.stdout ?? '').slice(-4000)}\n${r.stderr}`,
      );
    }
    results = readJunit(join(STATE, 'junit-berthd.xml'));
  }, 26 * 60_000);

  it('ran the whole suite', () => {
    expect(summary).toMatch(/^critest: \d+ passed, \d+ failed, \d+ skipped$/);
    expect(results.size).toBeGreaterThanOrEqual(80);
  });

  it('passes at least the 78 specs containerd 1.6 passes on this kit', () => {
    const passed = [...results.values()].filter((r) => r === 'passed').length;
    expect(passed).toBeGreaterThanOrEqual(78);
  });

  describe("the first CRI part's groups", () => {
    it.each(ISSUE_10.map((s) => [s]))('%s', (spec) => {
      expect(results.get(spec)).toBe('passed');
    });
  });

  describe("the second CRI part's: streaming, stats, logs, the security context", () => {
    it.each(ISSUE_11.map((s) => [s]))('%s', (spec) => {
      expect(results.get(spec)).toBe('passed');
    });
  });
});
