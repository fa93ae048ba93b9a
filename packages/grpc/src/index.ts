export {
  Call,
  encodeGrpcMessage,
  type HandlerOptions,
  type Log,
  messagePrefix,
  parseTimeout,
  StatusError,
} from './call';
export {
  acceptableAuthority,
  ClientFrameFilter,
  ConnectionError,
  encodeLiterals,
  FilteredSocket,
  goawayFrame,
  REPLACEMENT_AUTHORITY,
} from './frames';
export { ConnectionSniffer, serverSettingsFrame, type Verdict } from './handoff';
export { HEALTH_SERVICE, HealthService, type ServingStatus } from './health';
export {
  bidi,
  clientStream,
  type Handler,
  type MethodDefinition,
  type RawHandler,
  raw,
  Server,
  type ServerOptions,
  ServerStreamCall,
  type ServiceDefinition,
  type ServiceRegistrar,
  serverStream,
  unary,
} from './server';
