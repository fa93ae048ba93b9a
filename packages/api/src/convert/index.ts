/**
 * Conversions between @berth/api's domain types and the generated wire messages, written
 * once for both sides: the daemon's servers and the client's remote stores use these.
 */
export * from './any';
export * from './container';
export * from './content';
export * from './descriptor';
export * from './envelope';
export * from './image';
export * from './lease';
export * from './mount';
export * from './process';
export * from './snapshot';
export * from './timestamp';
