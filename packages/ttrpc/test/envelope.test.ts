import { InvalidArgumentError } from '@berth/api';
import { decodeRequest, decodeResponse, encodeRequestFrame, encodeResponseFrame } from '../src/envelope';
import { HEADER_LENGTH } from '../src/frame';

// The envelope behind the blank header the encoders reserve.
const encodeRequest = (...args: Parameters<typeof encodeRequestFrame>): Buffer =>
  encodeRequestFrame(...args).subarray(HEADER_LENGTH);
const encodeResponse = (...args: Parameters<typeof encodeResponseFrame>): Buffer =>
  encodeResponseFrame(...args).subarray(HEADER_LENGTH);

import { echoType, envelopeType } from './fixtures/echo';

const Request = envelopeType('Request');
const Response = envelopeType('Response');
const EchoRequest = echoType('EchoRequest');

describe('envelopes', () => {
  it('encodes a request that proto/ttrpc.proto decodes field for field', () => {
    const body = encodeRequest(
      'berth.test.ttrpc.Echo',
      'Echo',
      { type: EchoRequest, value: { text: 'hi', big: 2 ** 40, kind: 'LOUD' } },
      1_500_000_000,
      [
        { key: 'containerd-namespace-ttrpc', value: 'ns1' },
        { key: 'k', value: '' },
      ],
    );
    const decoded = Request.toObject(Request.decode(body), { longs: Number, defaults: true }) as any;
    expect(decoded.service).toBe('berth.test.ttrpc.Echo');
    expect(decoded.method).toBe('Echo');
    expect(decoded.timeoutNano).toBe(1_500_000_000);
    expect(decoded.metadata).toEqual([
      { key: 'containerd-namespace-ttrpc', value: 'ns1' },
      { key: 'k', value: '' },
    ]);
    expect(
      EchoRequest.toObject(EchoRequest.decode(decoded.payload), { longs: Number, enums: String }),
    ).toEqual({
      text: 'hi',
      big: 2 ** 40,
      kind: 'LOUD',
    });
  });

  it('decodes a request encoded by proto/ttrpc.proto, payload as a view', () => {
    const payload = Buffer.from(EchoRequest.encode({ text: 'x' }).finish());
    const body = Buffer.from(
      Request.encode(
        Request.fromObject({
          service: 's',
          method: 'm',
          payload,
          timeoutNano: 42,
          metadata: [{ key: 'a', value: 'b' }],
        }),
      ).finish(),
    );
    const req = decodeRequest(body);
    expect(req).toEqual({
      service: 's',
      method: 'm',
      payload,
      hasPayload: true,
      timeoutNano: 42,
      metadata: [{ key: 'a', value: 'b' }],
    });
    expect(req.payload.buffer).toBe(body.buffer);
  });

  it('tells an absent payload from an empty one', () => {
    expect(decodeRequest(encodeRequest('s', 'm', undefined, 0, undefined)).hasPayload).toBe(false);
    expect(decodeRequest(encodeRequest('s', 'm', Buffer.alloc(0), 0, undefined)).hasPayload).toBe(true);
  });

  it('round-trips responses with and without status', () => {
    const ok = encodeResponse(0, '', Buffer.from('abc'));
    expect(Response.toObject(Response.decode(ok), { defaults: true })).toMatchObject({
      status: { code: 0, message: '' },
    });
    expect(decodeResponse(ok)).toEqual({ code: 0, message: '', payload: Buffer.from('abc') });
    const err = Buffer.from(
      Response.encode(Response.fromObject({ status: { code: 5, message: 'x: not found' } })).finish(),
    );
    expect(decodeResponse(err)).toEqual({ code: 5, message: 'x: not found', payload: Buffer.alloc(0) });
  });

  it('rejects truncated envelopes with InvalidArgument', () => {
    const body = encodeRequest('service', 'method', Buffer.from('payload'), 0, undefined);
    for (const cut of [3, body.length - 2]) {
      expect(() => decodeRequest(body.subarray(0, cut))).toThrow(InvalidArgumentError);
    }
    const res = encodeResponse(3, 'bad', Buffer.from('payload'));
    expect(() => decodeResponse(res.subarray(0, res.length - 1))).toThrow(/malformed response/);
  });

  it('reserves exactly a blank header in front of the envelope', () => {
    const frame = encodeRequestFrame('s', 'm', undefined, 0, undefined);
    expect(frame.subarray(0, HEADER_LENGTH)).toEqual(Buffer.alloc(HEADER_LENGTH));
    expect(Request.decode(frame.subarray(HEADER_LENGTH))).toMatchObject({ service: 's', method: 'm' });
  });

  it('skips fields it does not know', () => {
    const body = Buffer.concat([encodeRequest('s', 'm', undefined, 0, undefined), Buffer.from([0x38, 0x01])]);
    expect(decodeRequest(body).service).toBe('s');
  });
});
