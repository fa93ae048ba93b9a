import {
  type AnyMessage,
  decodeAny,
  encodeAny,
  grpcService,
  InvalidArgumentError,
  typeNameOfUrl,
} from '@berth/api';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../log';
import type { GrpcService, ServiceRegistrar } from '../../server/grpc-server';
import { bidi, send } from '../../server/handlers';
import { QueuedStream, type StreamManager } from './manager';

export const STREAMING_SERVICE = 'containerd.services.streaming.v1.Streaming';
const STREAM_INIT = 'containerd.services.streaming.v1.StreamInit';

const toAny = (m: { typeUrl?: string; value?: Uint8Array } | null | undefined): AnyMessage => ({
  typeUrl: m?.typeUrl ?? '',
  value: Buffer.from(m?.value ?? []),
});

/**
 * containerd.services.streaming.v1.Streaming: the first message names the stream
 * (StreamInit); once it is registered the server answers with an Empty, and the stream
 * belongs to whichever service asks the manager for it until that service closes it or
 * the client goes away.
 */
export class StreamingServer implements GrpcService {
  constructor(
    private readonly manager: StreamManager,
    private readonly log?: Logger,
  ) {}

  register(server: ServiceRegistrar): void {
    const manager = this.manager;
    server.addService(grpcService(STREAMING_SERVICE), {
      Stream: bidi(
        async (ctx, call: grpc.ServerDuplexStream<AnyMessage, AnyMessage>) => {
          const stream = new QueuedStream(
            async (msg) => {
              if (call.cancelled || call.destroyed) throw new InvalidArgumentError('stream is gone');
              await send(call, msg);
            },
            { pause: () => call.pause(), resume: () => call.resume() },
          );
          call.on('data', (m: AnyMessage) => stream.push(toAny(m)));
          call.on('end', () => stream.end());
          call.on('error', (e) => stream.fail(e));
          call.on('cancelled', () => {
            stream.fail(new InvalidArgumentError('stream canceled by the client'));
            stream.close();
          });
          const init = await stream.recv();
          if (!init) return;
          if (typeNameOfUrl(init.typeUrl) !== STREAM_INIT) {
            throw new InvalidArgumentError(
              `stream: first message must be a ${STREAM_INIT}, got "${init.typeUrl}"`,
            );
          }
          const { id } = decodeAny<{ id: string }>(init);
          if (!id) throw new InvalidArgumentError('stream: StreamInit needs an id');
          const unregister = manager.register(ctx, id, stream);
          try {
            await send(call, encodeAny('google.protobuf.Empty', {}));
            await stream.closed;
          } finally {
            unregister();
          }
        },
        { log: this.log, method: 'Streaming/Stream' },
      ),
    });
  }
}
