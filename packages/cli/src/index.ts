export { type CommandSpec, type FlagSpec, helpText, parseArgs, UsageError } from './args';
export { DEFAULT_ADDRESS, GLOBAL_FLAGS, main, ROOT } from './main';
export { CTR_PLUGINS, CTR_SPACES, CTR_TABS, formatTable, type TabWriterOptions, table } from './tabwriter';
export { humanDuration, humanSize, parseDuration, rfc3339Local } from './units';
