/** The version `-v` and Connect report. */
export const SHIM_VERSION = '0.1.0';
