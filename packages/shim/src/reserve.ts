/**
 * The one ttrpc call `start` makes, encoded by hand so that the start path loads no
 * protobuf library: `Task.Connect{id}` to the running shim of the same group. The shim
 * answers with its pid and holds a reservation for `id` until Create arrives, so it does
 * not shut down between this check and the daemon's Create. A shim that is shutting down
 * answers with an error, and start then launches a new one.
 */
import * as net from 'node:net';
import { bytesField, lengthField, numberField, readFields } from './wire';

const TASK_SERVICE = 'containerd.task.v2.Task';
const REQUEST = 1;
const RESPONSE = 2;
const HEADER = 10;

/** A ttrpc request frame on stream 1 for Task.<method>. */
export function requestFrame(method: string, payload: Buffer, namespace: string): Buffer {
  const metadata = lengthField(
    5,
    Buffer.concat([lengthField(1, 'containerd-namespace-ttrpc'), lengthField(2, namespace)]),
  );
  const body = Buffer.concat([
    lengthField(1, TASK_SERVICE),
    lengthField(2, method),
    lengthField(3, payload),
    metadata,
  ]);
  const header = Buffer.alloc(HEADER);
  header.writeUInt32BE(body.length, 0);
  header.writeUInt32BE(1, 4);
  header[8] = REQUEST;
  return Buffer.concat([header, body]);
}

/** The status code of a ttrpc Response {status = 1 {code = 1}, payload = 2}. */
export function responseCode(body: Buffer): number {
  const status = bytesField(readFields(body), 1);
  return status === undefined ? 0 : numberField(readFields(status), 1);
}

export type ReserveAnswer = 'ok' | 'refused' | 'unreachable';

/**
 * Asks the shim at `path` to hold a place for container `id`: 'ok' when it agreed,
 * 'refused' when it answered otherwise or not in time (it is going away or busy),
 * 'unreachable' when nothing accepts connections there.
 */
export function reserve(
  path: string,
  namespace: string,
  id: string,
  timeoutMs = 5000,
): Promise<ReserveAnswer> {
  return new Promise((resolve) => {
    const socket = net.connect(path);
    let connected = false;
    let buffered = Buffer.alloc(0);
    const done = (answer: ReserveAnswer): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(done, timeoutMs, 'refused');
    socket.on('error', () => done(connected ? 'refused' : 'unreachable'));
    socket.on('close', () => done(connected ? 'refused' : 'unreachable'));
    socket.on('connect', () => {
      connected = true;
      socket.write(requestFrame('Connect', lengthField(1, id), namespace));
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < HEADER) return;
      const length = buffered.readUInt32BE(0);
      if (buffered.length < HEADER + length) return;
      if (buffered[8] !== RESPONSE) return done('refused');
      try {
        done(responseCode(buffered.subarray(HEADER, HEADER + length)) === 0 ? 'ok' : 'refused');
      } catch {
        done('refused');
      }
    });
  });
}
