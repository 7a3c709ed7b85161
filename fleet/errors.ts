/**
 * Every failure of the fleet tool carries a stable `code`; this is the one table mapping a code to the process exit
 * code `cli.ts` uses. Commands throw `FleetError`s and never exit. Messages never contain key material: a row's key
 * is named by its line and field, never quoted.
 */
export const EXIT_CODES = {
  /** Everything in the manifest is in the vault as asked (or, with --skip-invalid, every valid row is). */
  ok: 0,
  /** Anything we did not foresee (a bug in this tool or the SDK). */
  internal: 1,
  /** Bad or missing command-line arguments. */
  usage: 2,
  /** The manifest cannot be read, or has bad rows (without --skip-invalid): nothing was written. */
  manifest: 3,
  /** The vault could not be reached or kept failing (network, TLS, 5xx after every retry) before any row was decided. */
  vault_unavailable: 4,
  /** No credential, or the identity may not list or write secrets (401/403): nothing more was tried. */
  access_denied: 5,
  /** The run finished; some stored keys differ from the manifest and were left alone (see --replace). */
  conflicts: 6,
  /** The run finished; some rows could not be written after every retry. Run the same command again. */
  incomplete: 7,
  /** explain: the webhook would refuse this device (a 4xx: DPS answers 400207), or, without a token, any token of it. */
  refused: 8,
  /** explain: the function's settings cannot be loaded (the message names the setting). */
  settings: 9,
  /** Stopped by Ctrl-C; run the same command again to finish. */
  interrupted: 130,
} as const;

export type FleetErrorCode = Exclude<keyof typeof EXIT_CODES, 'ok'>;

export const EXIT_CODE_SUMMARIES: Readonly<Record<keyof typeof EXIT_CODES, string>> = {
  ok: 'every row imported or already there',
  internal: 'unexpected error (a bug)',
  usage: 'bad or missing arguments',
  manifest: 'manifest unreadable or has bad rows; nothing written',
  vault_unavailable: 'vault unreachable or failing',
  access_denied: 'no credential, or no right to list/write secrets',
  conflicts: 'some stored keys differ and were left alone (--replace rotates them)',
  incomplete: 'some rows failed after retries; run again to finish',
  refused: 'explain: the webhook would refuse the device',
  settings: "explain: the function's settings cannot be loaded",
  interrupted: 'Ctrl-C; run again to finish',
};

export class FleetError extends Error {
  readonly code: FleetErrorCode;
  readonly hint?: string;

  constructor(code: FleetErrorCode, message: string, hint?: string) {
    super(message);
    this.name = 'FleetError';
    this.code = code;
    if (hint !== undefined) this.hint = hint;
  }

  get exitCode(): number {
    return EXIT_CODES[this.code];
  }
}

export function usageError(flag: string, problem: string): FleetError {
  return new FleetError('usage', `${flag} ${problem}`);
}
