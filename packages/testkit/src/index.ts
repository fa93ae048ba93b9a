export * from './processes';
export * from './daemons';
export * from './registry';
export * from './snapshotter';
export * from './images';
