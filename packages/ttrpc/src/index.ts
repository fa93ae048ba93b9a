/**
 * @berth/ttrpc: containerd's ttrpc (the lightweight RPC between containerd and its
 * shims) over unix sockets. Messages are protobufjs Types from @berth/api, in the same
 * JS shapes as every other berth package (camelCase, longs as numbers, enums as names).
 */
export {
  type CallOptions,
  type ClientStream,
  type ConnectOptions,
  type ServiceClient,
  TtrpcClient,
  type TtrpcClientOptions,
} from './client';
export { Flag, HEADER_LENGTH, MESSAGE_LENGTH_MAX, MessageType } from './frame';
export { type MetadataInit, socketPath, type TtrpcMetadata } from './metadata';
export type { MethodTypes, ServiceTypes } from './methods';
export {
  type CloseOptions,
  type ListenOptions,
  type ServerStream,
  type ServiceHandlers,
  type StreamHandler,
  type TtrpcCallContext,
  TtrpcServer,
  type TtrpcServerOptions,
  type UnaryHandler,
} from './server';
