/**
 * The body of an apply worker thread (see apply-pool.ts): applies layers sent to it, one at
 * a time, with applyLayer, and answers with the result or the error's gRPC status (the one
 * mapping in @berth/api turns it back into the same typed error on the other side).
 */
import { parentPort } from 'node:worker_threads';
import { toGrpcStatus } from '@berth/api';
import { type ApplyOptions, applyLayer } from './apply';
import type { WorkerRequest, WorkerResponse } from './apply-pool';

if (parentPort) {
  const port = parentPort;
  let queue: Buffer[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  let controller: AbortController | undefined;
  const post = (m: WorkerResponse) => port.postMessage(m);

  async function* chunks(): AsyncGenerator<Buffer> {
    for (;;) {
      if (queue.length > 0) {
        const next = queue;
        queue = [];
        post({ type: 'credit', chunks: next.length });
        for (const c of next) yield c;
        continue;
      }
      if (ended) return;
      await new Promise<void>((r) => {
        wake = r;
      });
    }
  }

  port.on('message', (m: WorkerRequest) => {
    switch (m.type) {
      case 'apply': {
        queue = [];
        ended = false;
        controller = new AbortController();
        const opts: ApplyOptions = { ...m.opts, signal: controller.signal };
        applyLayer(chunks(), m.target, opts).then(
          (result) => post({ type: 'done', result }),
          (err) => {
            const st = toGrpcStatus(err);
            post({ type: 'error', code: st.code, details: st.details });
          },
        );
        return;
      }
      case 'chunk':
        queue.push(Buffer.from(m.data));
        break;
      case 'end':
        ended = true;
        break;
      case 'abort':
        controller?.abort(new Error('layer apply canceled'));
        ended = true;
        break;
    }
    const w = wake;
    wake = undefined;
    w?.();
  });
}
