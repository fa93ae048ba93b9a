import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { main } from '@berth/cli';
import { makeTempDir, removeDir } from '@berth/testkit';

/** Runs main() with in-memory stdio; no daemon is involved in these cases. */
async function cli(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (b: Buffer) => out.push(b));
  stderr.on('data', (b: Buffer) => err.push(b));
  const stdin = new PassThrough();
  stdin.end();
  const code = await main(argv, { stdin, stdout, stderr, env });
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

describe('main', () => {
  it('prints help on stdout and exits 0', async () => {
    const r = await cli(['--help']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^Usage: berth \[global flags\] <command>/);
    expect(r.stdout).toContain('namespaces, namespace, ns');
  });

  it('prints its version', async () => {
    const r = await cli(['--version']);
    expect(r).toMatchObject({ code: 0, stdout: expect.stringMatching(/^berth version \d+\.\d+\.\d+\n$/) });
  });

  it.each([
    [[], '"berth" needs a command'],
    [['content', 'get'], '"berth content get" expects 1 argument, got 0'],
    [['content', 'ls', '--bogus'], 'unknown flag --bogus'],
  ])('exits 2 with the message and the usage for %j', async (argv, message) => {
    const r = await cli(argv);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^berth: ${message}\\n\\nUsage: berth`));
  });

  it('refuses a malformed digest before connecting, exit 1', async () => {
    const r = await cli(['-a', '/nonexistent/berth.sock', 'content', 'get', 'xyz']);
    expect(r).toMatchObject({ code: 1, stdout: '' });
    expect(r.stderr).toBe('berth: invalid digest "xyz": missing algorithm\n');
  });

  it('reports an unreachable daemon naming the socket, exit 1', async () => {
    const dir = makeTempDir('cli-main-');
    try {
      const socket = join(dir, 'none.sock');
      const r = await cli(['-a', socket, 'namespaces', 'ls']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^berth: failed to dial "${socket}": .*ENOENT`));
      // The address also comes from the environment.
      const e = await cli(['namespaces', 'ls'], { CONTAINERD_ADDRESS: socket });
      expect(e.stderr).toContain(socket);
    } finally {
      removeDir(dir);
    }
  });
});
