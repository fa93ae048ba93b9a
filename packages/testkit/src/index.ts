export * from './crash';
export * from './daemons';
export * from './images';
export * from './processes';
export * from './push';
export * from './registry';
export * from './snapshotter';
