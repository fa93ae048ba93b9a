import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

// The checked-in codecs (src/gen) must be what scripts/generate.js makes from proto/ now.
const script = require('../scripts/generate.js') as {
  generate(outDir: string): void;
  protocVersion(): string | undefined;
};

const GEN = path.join(__dirname, '..', 'src', 'gen');
const protoc = script.protocVersion();

function listFiles(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listFiles(dir, child));
    else out.push(child);
  }
  return out.sort();
}

const withProtoc = protoc ? describe : describe.skip;
if (!protoc) {
  console.warn(
    'generated.test.ts: skipped, protoc is not installed (Debian: apt-get install protobuf-compiler)',
  );
}

withProtoc(`generated codecs (${protoc ?? 'protoc missing'})`, () => {
  let out: string;
  beforeAll(() => {
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-api-gen-'));
    script.generate(out);
  }, 60_000);
  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

  it('are up to date with proto/: run `pnpm --filter @berth/api generate` when this fails', () => {
    const fresh = listFiles(out);
    expect(listFiles(GEN)).toEqual(fresh);
    const stale = fresh.filter(
      (f) => fs.readFileSync(path.join(out, f), 'utf8') !== fs.readFileSync(path.join(GEN, f), 'utf8'),
    );
    expect(stale).toEqual([]);
  });

  it('cover every proto file and service', () => {
    const index = fs.readFileSync(path.join(out, 'index.ts'), 'utf8');
    for (const service of ['containerd.task.v2.Task', 'containerd.services.events.ttrpc.v1.Events']) {
      expect(index).toContain(`'${service}'`);
    }
    for (const wellKnown of ['any', 'empty', 'field_mask', 'timestamp']) {
      expect(fs.existsSync(path.join(out, 'google', 'protobuf', `${wellKnown}.ts`))).toBe(true);
    }
  });
});
