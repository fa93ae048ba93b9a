export * from './processes';
export * from './daemons';
