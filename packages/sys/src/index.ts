export * from './mount';
export type { ExitInfo } from './native';
export * from './syscalls';
