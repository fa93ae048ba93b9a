export * from './mount';
export type { ExitInfo } from './native';
export * from './netns';
export * from './syscalls';
