export * from './daemons';
export * from './full-disk';
export * from './images';
export * from './processes';
export * from './push';
export * from './registry';
export * from './small-fs';
export * from './snapshotter';
