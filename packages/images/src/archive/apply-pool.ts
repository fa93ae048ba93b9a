import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { CanceledError, fromGrpcStatus } from '@berth/api';
import { type ApplyOptions, type ApplyResult, applyLayer } from './apply';

/** What a worker is told. */
export type WorkerRequest =
  | { type: 'apply'; target: string; opts: Omit<ApplyOptions, 'signal' | 'zstd'> }
  | { type: 'chunk'; data: ArrayBuffer }
  | { type: 'end' }
  | { type: 'abort' };

/** What a worker answers. */
export type WorkerResponse =
  | { type: 'credit'; chunks: number }
  | { type: 'done'; result: ApplyResult }
  | { type: 'error'; code: number; details: string };

/** Chunks handed to a worker before it has taken them: enough to keep it busy, bounded memory. */
const IN_FLIGHT = 8;

const WORKER_FILE = join(__dirname, 'apply-worker.js');

/**
 * Layer applies on worker threads. Applying is a long run of small synchronous filesystem
 * calls; on the daemon's main thread it competes with the downloads of the same pull (and
 * everything else the daemon does), on a worker it runs beside them on another core. The
 * caller streams the compressed layer in; the worker decompresses, hashes and writes.
 * Where the compiled worker is not available (running from sources), applies run in-thread.
 */
export class ApplyPool {
  private readonly idle: Worker[] = [];
  private readonly waiting: Array<(w: Worker) => void> = [];
  private count = 0;
  private closed = false;

  constructor(
    readonly size = Math.max(2, Math.min(4, availableParallelism())),
    /** The compiled worker (tests running from sources point at the built one). */
    private readonly workerFile = WORKER_FILE,
  ) {}

  /** Whether applies really go to workers here (the worker is compiled). */
  get available(): boolean {
    return existsSync(this.workerFile);
  }

  private async acquire(): Promise<Worker> {
    const w = this.idle.pop();
    if (w) {
      w.ref();
      return w;
    }
    if (this.count < this.size) {
      this.count++;
      const worker = new Worker(this.workerFile);
      worker.on('error', () => undefined);
      worker.on('exit', () => {
        this.count--;
        const i = this.idle.indexOf(worker);
        if (i >= 0) this.idle.splice(i, 1);
      });
      return worker;
    }
    return new Promise((r) => this.waiting.push(r));
  }

  private release(w: Worker, healthy: boolean): void {
    if (!healthy || this.closed) {
      void w.terminate();
      return;
    }
    const next = this.waiting.shift();
    if (next) next(w);
    else {
      w.unref();
      this.idle.push(w);
    }
  }

  /** applyLayer(stream, target, opts) on a worker thread. */
  async apply(stream: AsyncIterable<Buffer>, target: string, opts: ApplyOptions = {}): Promise<ApplyResult> {
    if (!this.available || this.closed) return applyLayer(stream, target, opts);
    const { signal, zstd: _zstd, ...plain } = opts;
    signal?.throwIfAborted();
    const w = await this.acquire();
    let healthy = true;
    let credit = IN_FLIGHT;
    let wakeSender: (() => void) | undefined;
    let finished = false;
    const result = new Promise<ApplyResult>((resolve, reject) => {
      const onMessage = (m: WorkerResponse) => {
        if (m.type === 'credit') {
          credit += m.chunks;
          const s = wakeSender;
          wakeSender = undefined;
          s?.();
          return;
        }
        cleanup();
        if (m.type === 'done') resolve(m.result);
        else reject(fromGrpcStatus({ code: m.code, details: m.details }));
      };
      const onExit = (code: number) => {
        healthy = false;
        cleanup();
        reject(new CanceledError(`layer apply worker exited (${code})`));
      };
      const cleanup = () => {
        finished = true;
        w.off('message', onMessage);
        w.off('exit', onExit);
        const s = wakeSender;
        wakeSender = undefined;
        s?.();
      };
      w.on('message', onMessage);
      w.on('exit', onExit);
    });
    const onAbort = () => w.postMessage({ type: 'abort' } satisfies WorkerRequest);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      w.postMessage({ type: 'apply', target, opts: plain } satisfies WorkerRequest);
      const feed = (async () => {
        try {
          for await (const chunk of stream) {
            while (credit <= 0 && !finished) await new Promise<void>((r) => (wakeSender = r));
            if (finished) return;
            credit--;
            // A copy the worker owns: the source may reuse or slice its buffers.
            const data = new Uint8Array(chunk).buffer;
            w.postMessage({ type: 'chunk', data } satisfies WorkerRequest, [data]);
          }
          if (!finished) w.postMessage({ type: 'end' } satisfies WorkerRequest);
        } catch (e) {
          if (!finished) w.postMessage({ type: 'abort' } satisfies WorkerRequest);
          throw e;
        }
      })();
      const [res] = await Promise.all([result, feed]);
      return res;
    } catch (e) {
      // A failed read of the source leaves the worker mid-apply: let it finish aborting first.
      if (!finished) {
        await result.catch(() => undefined);
      }
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.release(w, healthy);
    }
  }

  /** Ends the idle workers; applies still running finish first. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.idle.splice(0).map((w) => w.terminate()));
  }
}

let shared: ApplyPool | undefined;

/** The process's pool (created on first use). */
export function defaultApplyPool(): ApplyPool {
  shared ??= new ApplyPool();
  return shared;
}
