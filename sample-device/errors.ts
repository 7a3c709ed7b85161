/**
 * Every failure of the sample device carries a stable `code`; this is the one table that maps a code to the process
 * exit code `cli.ts` uses. Commands throw `SampleDeviceError`s and never exit; the CLI prints `message` (and `hint`).
 *
 * Messages never contain a symmetric key, a group key or a SAS token: they are built from our own text plus DPS's
 * error code and message, never from a transport error's request or headers.
 */
export const EXIT_CODES = {
  /** Anything we did not foresee (a bug in this tool or the SDK). */
  internal: 1,
  /** Bad or missing command-line arguments. */
  usage: 2,
  /** A key file is missing, unreadable, not the expected key, or would be overwritten. */
  file: 3,
  /** DPS could not be reached: DNS, refused connection, TLS trust, or no answer in time. */
  unreachable: 4,
  /** DPS rejected the device's credentials (401002: wrong symmetric key / SAS, or no such enrollment). */
  unauthorized: 5,
  /** The webhook refused this device (400207 CustomAllocationFailed): bad/expired token, unknown or disabled key. */
  refused: 6,
  /** The webhook or its wiring is broken (400208 no hub chosen, 400209 missing/invalid function key). */
  webhook_misconfigured: 7,
  /** The enrollment (or the device's registration) is disabled in DPS. */
  disabled: 8,
  /** Any other failed registration DPS reported (its error code and message are printed). */
  dps_failed: 9,
  /** The registration did not finish within --timeout. */
  timeout: 10,
  /** The assigned IoT hub could not be reached (connection refused, DNS, TLS trust, no CONNACK in time). */
  hub_unreachable: 11,
  /** The hub refused the device's credentials (CONNACK 5: wrong key, or no such device on that hub). */
  hub_unauthorized: 12,
  /** Connected, but the twin (or the reported-properties acknowledgement) did not come in time. */
  twin_timeout: 13,
  /** Stopped by Ctrl-C (or the caller's AbortSignal); 128 + SIGINT, as shells report it. */
  interrupted: 130,
} as const;

export type SampleDeviceErrorCode = keyof typeof EXIT_CODES;

/** One line per exit code, for `--help`. */
export const EXIT_CODE_SUMMARIES: Readonly<Record<SampleDeviceErrorCode, string>> = {
  internal: 'unexpected error (a bug)',
  usage: 'bad or missing arguments',
  file: 'key or CA file missing, unreadable, wrong kind, or would be overwritten',
  unreachable: 'DPS not reachable (DNS, connection, untrusted TLS certificate)',
  unauthorized: 'DPS 401002: wrong symmetric key / SAS, or no matching enrollment',
  refused: 'DPS 400207: the webhook refused this device',
  webhook_misconfigured: 'DPS 400208/400209: webhook chose no hub / URL lacks a valid function key',
  disabled: 'the enrollment is disabled',
  dps_failed: 'another DPS failure (code and message printed)',
  timeout: 'no result within --timeout',
  hub_unreachable: 'the assigned hub is not reachable (connection, DNS, TLS trust, no answer)',
  hub_unauthorized: 'the hub refused the device (CONNACK 5: wrong key or unknown device)',
  twin_timeout: 'connected, but no twin / reported-properties answer in time',
  interrupted: 'Ctrl-C',
};

export interface SampleDeviceErrorDetails {
  /** A line telling the user what to do about it. */
  readonly hint?: string;
  /** DPS's numeric error code (e.g. 400207), when DPS reported one. */
  readonly dpsErrorCode?: number;
  /** DPS's own error message, when it reported one. */
  readonly dpsMessage?: string;
  /** The registration status DPS reported (failed, disabled, ...), when known. */
  readonly dpsStatus?: string;
  /** The command-line flag the error is about, for usage errors. */
  readonly flag?: string;
}

export class SampleDeviceError extends Error {
  readonly code: SampleDeviceErrorCode;
  readonly hint?: string;
  readonly dpsErrorCode?: number;
  readonly dpsMessage?: string;
  readonly dpsStatus?: string;
  readonly flag?: string;

  constructor(code: SampleDeviceErrorCode, message: string, details: SampleDeviceErrorDetails = {}) {
    super(message);
    this.name = 'SampleDeviceError';
    this.code = code;
    if (details.hint !== undefined) this.hint = details.hint;
    if (details.dpsErrorCode !== undefined) this.dpsErrorCode = details.dpsErrorCode;
    if (details.dpsMessage !== undefined) this.dpsMessage = details.dpsMessage;
    if (details.dpsStatus !== undefined) this.dpsStatus = details.dpsStatus;
    if (details.flag !== undefined) this.flag = details.flag;
  }

  get exitCode(): number {
    return EXIT_CODES[this.code];
  }
}

/** A usage error about one flag; the message starts with the flag so the user sees which one. */
export function usageError(flag: string, message: string): SampleDeviceError {
  return new SampleDeviceError('usage', `${flag} ${message}`, { flag });
}
