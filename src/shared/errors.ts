/** Errors that end a command with a sentence for the user and a chosen exit code. */

/** A failure to report as `od: <message>` with exit code `exitCode` (default 1). */
export class OdError extends Error {
  override name = "OdError";
  readonly exitCode: number;
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.exitCode = options.exitCode ?? 1;
  }
}

/** A command line that does not parse: exit code 2, like other Unix tools. */
export class UsageError extends OdError {
  override name = "UsageError";
  constructor(message: string) {
    super(message, { exitCode: 2 });
  }
}

/** Thrown by argument parsing when `--help` was given; main prints the usage and exits 0. */
export class HelpRequested extends Error {
  override name = "HelpRequested";
  constructor(readonly usage: string) {
    super("help requested");
  }
}

/** The message of any thrown value, without a stack. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
