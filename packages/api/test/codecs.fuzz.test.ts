/**
 * Property-based tests (fast-check) of the protobuf decode path every request takes
 * (the generated codecs behind grpcService). Whatever bytes a client sends: a value or an
 * Error, never a hang; a truncated message is refused, never decoded into partial values
 * (what decodes is exactly what was sent: it re-encodes to the same bytes).
 */
import fc from 'fast-check';
import { grpcService, SERVICES } from '../src';

const RUNS = { numRuns: 300, interruptAfterTimeLimit: 8_000 };

interface Codec {
  name: string;
  decode(bytes: Buffer): unknown;
  encode(msg: unknown): Buffer;
}

/** Every request and response codec of every gRPC service berthd serves. */
const codecs: Codec[] = SERVICES.flatMap((service) =>
  Object.entries(grpcService(service)).flatMap(([method, d]) => [
    { name: `${service}/${method} request`, decode: d.requestDeserialize, encode: d.requestSerialize },
    { name: `${service}/${method} response`, decode: d.responseDeserialize, encode: d.responseSerialize },
  ]),
);

const method = (service: string, name: string) => grpcService(`containerd.services.${service}`)[name]!;

/** Real requests, with nested messages, maps, Anys, bytes, int64s, repeated fields and FieldMasks. */
const samples: [string, ReturnType<typeof method>, unknown][] = [
  [
    'Content.Write',
    method('content.v1.Content', 'Write'),
    {
      action: 'COMMIT',
      ref: 'ref-1',
      total: 1_234_567_890_123,
      expected: `sha256:${'ab'.repeat(32)}`,
      offset: 77,
      data: Buffer.from('some bytes \u0000\u00ff of a blob'),
      labels: { 'containerd.io/gc.root': '2026-12-06', a: 'b' },
    },
  ],
  [
    'Containers.Create',
    method('containers.v1.Containers', 'Create'),
    {
      container: {
        id: 'c1',
        labels: { x: 'y' },
        image: 'docker.io/library/busybox:latest',
        runtime: {
          name: 'io.containerd.runc.v2',
          options: { typeUrl: 'types.x/y', value: Buffer.from([1, 2, 3]) },
        },
        spec: {
          typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Spec',
          value: Buffer.from('{"a":1}'),
        },
        snapshotter: 'overlayfs',
        snapshotKey: 'c1',
        extensions: { e: { typeUrl: 'u', value: Buffer.from('v') } },
        createdAt: { seconds: 1_765_020_325, nanos: 915_261_957 },
      },
    },
  ],
  [
    'Tasks.Create',
    method('tasks.v1.Tasks', 'Create'),
    {
      containerId: 'c1',
      rootfs: [
        {
          type: 'overlay',
          source: 'overlay',
          target: '',
          options: ['lowerdir=/a:/b', 'upperdir=/u', 'workdir=/w'],
        },
      ],
      stdin: '/run/fifo-in',
      stdout: '/run/fifo-out',
      terminal: true,
    },
  ],
  [
    'Images.Update',
    method('images.v1.Images', 'Update'),
    {
      image: {
        name: 'r/i:t',
        labels: { l: 'v' },
        target: {
          mediaType: 'application/vnd.oci.image.index.v1+json',
          digest: `sha256:${'cd'.repeat(32)}`,
          size: 4096,
        },
      },
      updateMask: ['labels.l', 'target'],
    },
  ],
  [
    'Events.Forward',
    method('events.v1.Events', 'Forward'),
    {
      envelope: {
        timestamp: { seconds: 1, nanos: 2 },
        namespace: 'default',
        topic: '/tasks/exit',
        event: { typeUrl: 'containerd.events.TaskExit', value: Buffer.from([8, 1, 16, 2]) },
      },
    },
  ],
];

describe('generated codecs under hostile input', () => {
  test('every codec given arbitrary bytes answers a value or an Error', () => {
    fc.assert(
      fc.property(fc.nat(codecs.length - 1), fc.uint8Array({ maxLength: 200 }), (i, bytes) => {
        const codec = codecs[i]!;
        let msg: unknown;
        try {
          msg = codec.decode(Buffer.from(bytes));
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          return;
        }
        // What did decode is a message the same codec can send again.
        expect(codec.encode(msg)).toBeInstanceOf(Uint8Array);
      }),
      { ...RUNS, numRuns: 3000 },
    );
  });

  test.each(samples)(
    '%s: a truncated message is refused or decodes to exactly the bytes sent',
    (_, def, sample) => {
      const whole = def.requestSerialize(sample);
      // The sample itself round-trips byte for byte (the encoder is canonical).
      expect(
        Buffer.from(def.requestSerialize(def.requestDeserialize(whole))).equals(Buffer.from(whole)),
      ).toBe(true);
      fc.assert(
        fc.property(fc.integer({ min: 0, max: whole.length - 1 }), (cut) => {
          const prefix = whole.subarray(0, cut);
          let msg: unknown;
          try {
            msg = def.requestDeserialize(prefix);
          } catch (err) {
            expect(err).toBeInstanceOf(Error);
            return;
          }
          // Cut at a field boundary: a valid, shorter message, nothing invented or half-read.
          expect(Buffer.from(def.requestSerialize(msg)).equals(Buffer.from(prefix))).toBe(true);
        }),
        RUNS,
      );
    },
  );

  test.each(samples)(
    '%s: a corrupted message is refused, or decodes to one that encodes stably',
    (_, def, sample) => {
      const whole = Buffer.from(def.requestSerialize(sample));
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat(whole.length - 1), fc.integer({ min: 0, max: 255 })), {
            minLength: 1,
            maxLength: 4,
          }),
          (flips) => {
            const bytes = Buffer.from(whole);
            for (const [at, b] of flips) bytes[at] = b;
            let msg: unknown;
            try {
              msg = def.requestDeserialize(bytes);
            } catch (err) {
              expect(err).toBeInstanceOf(Error);
              return;
            }
            const again = def.requestSerialize(msg);
            expect(def.requestSerialize(def.requestDeserialize(Buffer.from(again)))).toEqual(again);
          },
        ),
        RUNS,
      );
    },
  );
});
