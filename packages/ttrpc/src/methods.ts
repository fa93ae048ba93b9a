import {
  CONVERSION_OPTIONS,
  decodeMessage as decodeApiMessage,
  encodeMessage as encodeApiMessage,
  InvalidArgumentError,
  isProtoTreeType,
  NotFoundError,
  protoService,
} from '@berth/api';
import { Method, type Service, type Type } from 'protobufjs';
import type { Payload } from './envelope';

/** The message types and stream shape of one RPC method. */
export interface MethodTypes {
  readonly requestType: Type;
  readonly responseType: Type;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

/** Where a service's method types come from: a protobufjs Service or a lookup by method name. */
export type ServiceTypes = Service | ((method: string) => MethodTypes | undefined);

export function methodTypesOf(method: Method): MethodTypes {
  method.resolve();
  if (!method.resolvedRequestType || !method.resolvedResponseType) {
    throw new InvalidArgumentError(`ttrpc: method ${method.fullName}: unresolved message types`);
  }
  return {
    requestType: method.resolvedRequestType,
    responseType: method.resolvedResponseType,
    requestStream: method.requestStream === true,
    responseStream: method.responseStream === true,
  };
}

/** A method lookup for a service name: from `types` when given, else from @berth/api's protos. */
export function serviceLookup(
  serviceName: string,
  types: ServiceTypes | undefined,
): (method: string) => MethodTypes | undefined {
  if (typeof types === 'function') return types;
  const service = types ?? apiService(serviceName);
  const cache = new Map<string, MethodTypes>();
  return (name) => {
    let found = cache.get(name);
    if (found === undefined) {
      const m = Object.hasOwn(service.methods, name) ? service.methods[name] : undefined;
      if (!(m instanceof Method)) return undefined;
      found = methodTypesOf(m);
      cache.set(name, found);
    }
    return found;
  };
}

/** Method names of a service definition, in declaration order. */
export function methodNames(service: Service): string[] {
  return service.methodsArray.map((m) => m.name);
}

/** Looks a service up in @berth/api, turning its NotFound into a ttrpc-flavoured message. */
export function apiService(name: string): Service {
  try {
    return protoService(name);
  } catch (err) {
    throw new NotFoundError(`ttrpc: service ${JSON.stringify(name)}: not found in the proto tree`, {
      cause: err,
    });
  }
}

// Asks without loading @berth/api's tree: peers that pass their own types never need it.
const isApiType = isProtoTreeType;

/**
 * Decodes a payload into the plain JS shape every berth package uses: types of @berth/api's
 * tree through its generated codecs, a peer's own types through protobufjs.
 */
export function decodePayload<T>(type: Type, bytes: Buffer, what: string): T {
  try {
    if (isApiType(type)) return decodeApiMessage<T>(type.fullName, bytes);
    return type.toObject(type.decode(bytes), CONVERSION_OPTIONS) as T;
  } catch (err) {
    throw new InvalidArgumentError(
      `ttrpc: decode ${what} ${type.fullName.slice(1)}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/**
 * The payload of a message for an envelope. Types of @berth/api's tree go through its
 * encodeMessage, which refuses misspelt field names instead of dropping them; other
 * types are encoded straight into the envelope.
 */
export function toPayload(type: Type, value: object): Payload {
  return isApiType(type) ? encodeApiMessage(type.fullName, value) : { type, value };
}

/** A message encoded on its own (the payload of a data frame), as strictly as toPayload. */
export function messageBytes(type: Type, value: object): Buffer {
  if (isApiType(type)) return encodeApiMessage(type.fullName, value);
  return type.encode(type.fromObject(value as Record<string, unknown>)).finish() as Buffer;
}
