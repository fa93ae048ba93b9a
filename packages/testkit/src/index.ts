export * from './processes';
export * from './daemons';
export * from './snapshotter';
