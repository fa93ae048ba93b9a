import { InvalidArgumentError, UnknownError } from '@berth/api';

/**
 * A plugin that ran and failed. Unknown on the wire, as containerd answers a failed CNI call;
 * the fields keep the plugin's own error (`{code, msg, details}` from its stdout) so a caller
 * can tell "try again later" (code 11) from a broken config (code 7).
 */
export class CniPluginError extends UnknownError {
  constructor(
    readonly network: string,
    readonly plugin: string,
    readonly command: CniCommand,
    readonly cniCode: number | undefined,
    readonly msg: string,
    readonly details?: string,
    options?: { cause?: unknown },
  ) {
    super(
      `plugin type="${plugin}" name="${network}" failed (${commandWord(command)}): ${msg}${details ? `; ${details}` : ''}`,
      options,
    );
  }
}

/** A network configuration file that could not be used; `file` names it. */
export class CniConfigError extends InvalidArgumentError {
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION';

// libcni's wording in "plugin type=... failed (add): ..."
const commandWord = (c: CniCommand) => (c === 'DEL' ? 'delete' : c.toLowerCase());
