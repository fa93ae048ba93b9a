import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, DeadlineExceededError, FailedPreconditionError, InvalidArgumentError } from '@berth/api';
import { type CniCommand, CniPluginError } from './errors';

/** What a plugin is run with: the CNI_* environment of the spec and its config on stdin. */
export interface PluginCall {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifName: string;
  /** CNI_ARGS pairs, in order ("K=V;K2=V2"). */
  args: [string, string][];
  binDirs: string[];
  network: string;
  plugin: string;
  config: Buffer;
  timeoutMs: number;
}

/** libcni's FindInPath: the first regular file named `type` in the search path. */
export async function findPlugin(type: string, binDirs: string[], network: string): Promise<string> {
  if (type === '' || type.includes('/'))
    throw new InvalidArgumentError(`network "${network}": invalid plugin name "${type}"`);
  for (const dir of binDirs) {
    const p = join(dir, type);
    const st = await stat(p).catch(() => undefined);
    if (st?.isFile()) return p;
  }
  throw new FailedPreconditionError(
    `network "${network}": failed to find plugin "${type}" in path [${binDirs.join(' ')}]`,
  );
}

/**
 * Runs one plugin and returns its parsed stdout (a result for ADD, usually nothing otherwise).
 * A non-zero exit becomes a CniPluginError carrying the `{code, msg, details}` the plugin
 * printed; a plugin that outlives `timeoutMs` is killed, as containerd's context deadline does.
 */
export async function execPlugin(path: string, call: PluginCall): Promise<unknown> {
  // "text file busy": the binary is being replaced right now; libcni retries for a few seconds too
  for (let attempt = 0; ; attempt++) {
    try {
      return await execOnce(path, call);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ETXTBSY' && attempt < 5) {
        await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      // the binary exists but cannot be run (EACCES: not executable, ENOEXEC: not a program)
      if (!(e instanceof BerthError))
        throw new FailedPreconditionError(
          `network "${call.network}": plugin ${path} could not be run: ${(e as Error).message}`,
          { cause: e },
        );
      throw e;
    }
  }
}

function execOnce(path: string, call: PluginCall): Promise<unknown> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId,
    CNI_NETNS: call.netns,
    CNI_ARGS: call.args.map(([k, v]) => `${k}=${v}`).join(';'),
    CNI_IFNAME: call.ifName,
    CNI_PATH: call.binDirs.join(':'),
  };
  return new Promise((resolve, reject) => {
    const child = spawn(path, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, call.timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    // a plugin that exits without reading its config closes stdin under us: not our failure
    child.stdin.on('error', () => {});
    child.stdin.end(call.config);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (timedOut) {
        reject(
          new DeadlineExceededError(
            `plugin type="${call.plugin}" name="${call.network}" (${call.command.toLowerCase()}): did not finish within ${call.timeoutMs}ms`,
          ),
        );
        return;
      }
      if (code !== 0) {
        reject(pluginError(call, stdout, stderr, code, signal));
        return;
      }
      if (stdout.trim() === '') {
        resolve(undefined);
        return;
      }
      try {
        resolve(JSON.parse(stdout));
      } catch (e) {
        reject(
          new CniPluginError(
            call.network,
            call.plugin,
            call.command,
            undefined,
            `failed to parse the plugin's output ${JSON.stringify(stdout.slice(0, 512))}: ${(e as Error).message}`,
            undefined,
            { cause: e },
          ),
        );
      }
    });
  });
}

// libcni's RawExec.pluginErr: stdout JSON first, then stderr, then the exit status
function pluginError(
  call: PluginCall,
  stdout: string,
  stderr: string,
  code: number | null,
  signal: NodeJS.Signals | null,
): CniPluginError {
  const status = signal ? `signal ${signal}` : `exit status ${code}`;
  const mk = (cniCode: number | undefined, msg: string, details?: string) =>
    new CniPluginError(call.network, call.plugin, call.command, cniCode, msg, details);
  if (stdout.trim() === '') {
    if (stderr.trim() === '') return mk(undefined, `netplugin failed with no error message: ${status}`);
    return mk(undefined, `netplugin failed: ${JSON.stringify(stderr.trim())}`);
  }
  try {
    const e = JSON.parse(stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    return mk(
      typeof e.code === 'number' ? e.code : undefined,
      typeof e.msg === 'string' ? e.msg : `netplugin failed: ${status}`,
      typeof e.details === 'string' && e.details !== '' ? e.details : undefined,
    );
  } catch (e) {
    return mk(
      undefined,
      `netplugin failed but error parsing its diagnostic message ${JSON.stringify(stdout.trim())}: ${(e as Error).message}`,
    );
  }
}
