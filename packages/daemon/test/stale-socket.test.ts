/**
 * A killed berthd leaves `<address>.ttrpc` behind. Removing that stale socket at the next
 * start once broke every later lazy require() of a pnpm dependency in the process (Node
 * 20's realpath reads the stat buffer the socket's stat left: nodejs/node#51142), so the
 * first restart after a crash died with "Cannot find module". Each case runs in a fresh
 * node process, where the module cache is still empty, as in a starting daemon.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { makeTempDir, removeDir } from '@berth/testkit';

const pkg = join(__dirname, '..');

/** Leaves a stale unix socket at path: a process binds it and dies without unlinking. */
function staleSocket(path: string): void {
  const r = spawnSync(process.execPath, [
    '-e',
    `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`,
  ]);
  expect(r.signal).toBe('SIGKILL');
}

/** Runs script in a new node process from the daemon package; its stdout, or the error it printed. */
function inFreshProcess(script: string): string {
  const r = spawnSync(process.execPath, ['-e', script], { cwd: pkg, encoding: 'utf8' });
  return `${r.stdout}${r.stderr}`.trim();
}

describe('replacing a stale socket', () => {
  let dir: string;
  beforeEach(() => {
    dir = makeTempDir('berth-stale-');
  });
  afterEach(() => removeDir(dir));

  test('the ttrpc server takes the place of a stale socket, and grpc loads afterwards', () => {
    const sock = join(dir, 'berth.sock.ttrpc');
    staleSocket(sock);
    const out = inFreshProcess(`(async () => {
      const { TtrpcServer } = require('@berth/ttrpc');
      const server = new TtrpcServer();
      await server.listen(${JSON.stringify(sock)});
      try {
        require('@berth/api').grpcService('containerd.services.version.v1.Version');
        console.log('loaded');
      } catch (err) {
        console.log(err.message.split('\\n')[0]);
      }
      await server.close();
    })()`);
    expect(out).toBe('loaded');
  });

  test('the same through the helpers every package uses for sockets and FIFOs', () => {
    const sock = join(dir, 's.sock');
    staleSocket(sock);
    const out = inFreshProcess(`
      const api = require('@berth/api');
      const kinds = [api.isSocketFile(${JSON.stringify(sock)}), api.isFifoFile(${JSON.stringify(sock)})];
      api.unlinkQuiet(${JSON.stringify(sock)});
      api.unlinkQuiet(${JSON.stringify(sock)});
      api.removeTreeSync(${JSON.stringify(dir)});
      try {
        require('@grpc/grpc-js');
        console.log(JSON.stringify(kinds), 'loaded');
      } catch (err) {
        console.log(err.message.split('\\n')[0]);
      }`);
    expect(out).toBe('[true,false] loaded');
  });
});
