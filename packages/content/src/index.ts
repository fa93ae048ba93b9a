export { LocalStore, type LocalStoreOptions, openLocalStore } from './local-store';
export type { LocalWriter } from './writer';
