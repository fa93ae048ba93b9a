import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InvalidArgumentError } from '@berth/api';
import { TtrpcClient, TtrpcServer } from '../src';
import { ECHO, echoService } from './fixtures/echo';

// Binds a listening unix socket, puts it on fd 3 and execs the rest of argv: what a
// shim's `start` does for the long-running shim it spawns.
const WITH_SOCKET_ON_FD3 = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.execvp(sys.argv[2], sys.argv[2:])
`;

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

describe('listenFd', () => {
  let dir: string;
  let child: ChildProcess | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ttrpc-'));
  });
  afterEach(async () => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
    child = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves on a listening socket inherited as fd 3', async () => {
    const file = path.join(dir, 'shim.sock');
    child = spawn(
      'python3',
      [
        '-c',
        WITH_SOCKET_ON_FD3,
        file,
        process.execPath,
        path.join(__dirname, 'fixtures', 'run-ts.js'),
        path.join(__dirname, 'fixtures', 'fd-server.ts'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const proc = child;
    let stderr = '';
    proc.stderr!.on('data', (d) => {
      stderr += d;
    });
    const ready = await new Promise<string>((resolve, reject) => {
      let out = '';
      proc.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(out.trim());
      });
      proc.once('exit', (code) => reject(new Error(`child exited ${code}: ${stderr}`)));
    });
    // python exec'd node, so the pid that answers is the one we spawned.
    expect(ready).toBe(`ready ${proc.pid}`);
    const client = await TtrpcClient.connect(`unix://${file}`, { services: [echoService()] });
    expect(await client.call(ECHO, 'Echo', { text: 'via fd 3' })).toMatchObject({ text: 'via fd 3' });
    await client.close();
    proc.kill('SIGTERM');
    await exited(proc);
    expect(proc.exitCode).toBe(0);
  });

  it('refuses an fd that is not a descriptor number', async () => {
    const server = new TtrpcServer();
    await expect(server.listenFd(-1)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(server.listenFd(1.5)).rejects.toBeInstanceOf(InvalidArgumentError);
    await server.close();
  });
});
