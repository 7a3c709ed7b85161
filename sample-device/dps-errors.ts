/**
 * Turns whatever the SDK rejected `register()` with into a `SampleDeviceError` that says what happened and what it
 * means, from DPS's error code when there is one (dps-protocol §2-§4).
 *
 * The SDK's error objects hold the HTTP request (with its `Authorization: SharedAccessSignature ...` header) or the MQTT
 * connection options (with the SAS as password), so nothing here ever prints or copies an error object: only DPS's
 * numeric code, its message (scrubbed anyway), the registration status and a socket error code are read.
 */
import { SampleDeviceError, type SampleDeviceErrorCode } from './errors.js';

interface KnownDpsError {
  readonly code: SampleDeviceErrorCode;
  readonly name: string;
  readonly meaning: string;
  readonly hint?: string;
}

/** DPS error codes a device of this project can meet, and what each means here. */
export const DPS_ERRORS: Readonly<Record<number, KnownDpsError>> = {
  400207: {
    code: 'refused',
    name: 'CustomAllocationFailed',
    meaning: 'the webhook refused this device (bad/expired token, unknown key, disabled key...)',
    hint: "The webhook's log names the reason code for this registration id; `token` shows the claims this device signs.",
  },
  400208: {
    code: 'webhook_misconfigured',
    name: 'CustomAllocationIotHubNotSpecified',
    meaning: 'the webhook accepted the device but named no IoT hub (it must answer an iotHubHostName from linkedHubs)',
    hint: 'Check that the enrollment links at least one IoT hub and the webhook can pick it.',
  },
  400209: {
    code: 'webhook_misconfigured',
    name: 'CustomAllocationUnauthorizedAccess',
    meaning: 'the webhook URL lacks a valid function key (the webhook answered 401 to DPS)',
    hint: "Set the enrollment's webhookUrl with ?code=<function key> (the portal hides it; use the CLI or API).",
  },
  401002: {
    code: 'unauthorized',
    name: 'Unauthorized',
    meaning: 'the symmetric key / SAS is wrong (or no enrollment in this id scope matches the registration id)',
    hint: 'Check --id-scope and --registration-id, and that --symmetric-key is the enrollment\'s key or --group-key the group\'s.',
  },
};

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ECONNABORTED']);
const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
]);

/** Removes anything that looks like a SAS token or its signature, in case a server echoed one into a message. */
export function redact(text: string): string {
  return text
    .replace(/SharedAccessSignature\s+[^\s"',;]+/gi, 'SharedAccessSignature [redacted]')
    .replace(/\bsig=[^&\s"',;]+/gi, 'sig=[redacted]');
}

type Bag = Record<string, unknown>;
const isBag = (value: unknown): value is Bag => typeof value === 'object' && value !== null;

export interface DpsFailure {
  readonly status?: string;
  readonly errorCode?: number;
  readonly message?: string;
  /** HTTP status, or the `res/{status}` of an MQTT answer. */
  readonly httpStatus?: number;
}

function numberOrUndefined(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
  return Number.isInteger(n) ? n : undefined;
}

function fromBody(body: Bag): DpsFailure {
  const state = isBag(body.registrationState) ? body.registrationState : undefined;
  const errorCode = numberOrUndefined(state?.errorCode ?? body.errorCode);
  const message = state?.errorMessage ?? body.errorMessage ?? body.message;
  const status = state?.status ?? body.status;
  return {
    ...(typeof status === 'string' && { status }),
    ...(errorCode !== undefined && { errorCode }),
    ...(typeof message === 'string' && { message: redact(message) }),
  };
}

/** What DPS said, read from the places the HTTP and MQTT transports put it. */
export function dpsFailureOf(error: unknown): DpsFailure {
  if (!isBag(error)) return {};
  let failure: DpsFailure = {};
  if (isBag(error.result)) {
    failure = fromBody(error.result);
  } else if (typeof error.responseBody === 'string') {
    try {
      const parsed: unknown = JSON.parse(error.responseBody);
      if (isBag(parsed)) failure = fromBody(parsed);
    } catch {
      // Not JSON: DPS always answers JSON, so this came from something else on the path; the status still tells.
    }
  }
  const response = isBag(error.response) ? error.response : isBag(error.transportObject) ? error.transportObject : undefined;
  let httpStatus = numberOrUndefined(response?.statusCode);
  if (httpStatus === undefined && typeof response?.topic === 'string') {
    httpStatus = numberOrUndefined(/^\$dps\/registrations\/res\/(\d{3})\//.exec(response.topic)?.[1]);
  }
  return { ...failure, ...(httpStatus !== undefined && { httpStatus }) };
}

/** The socket or TLS error code under the SDK's wrappers (`transportError`, `cause`). */
export function socketCodeOf(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && isBag(current); depth++) {
    if (typeof current.code === 'string') return current.code;
    current = current.transportError ?? current.cause;
  }
  return undefined;
}

export interface FailureContext {
  readonly registrationId: string;
  readonly host: string;
  readonly transport: string;
}

export function explainRegistrationError(error: unknown, context: FailureContext): SampleDeviceError {
  if (error instanceof SampleDeviceError) return error;
  const where = `${context.host} over ${context.transport}`;
  const failure = dpsFailureOf(error);
  const details = {
    ...(failure.errorCode !== undefined && { dpsErrorCode: failure.errorCode }),
    ...(failure.message !== undefined && { dpsMessage: failure.message }),
    ...(failure.status !== undefined && { dpsStatus: failure.status }),
  };
  const said = failure.message !== undefined ? ` DPS said: "${failure.message}"` : '';

  const known = failure.errorCode !== undefined ? DPS_ERRORS[failure.errorCode] : undefined;
  if (known !== undefined && failure.errorCode !== undefined) {
    return new SampleDeviceError(
      known.code,
      `registration of ${context.registrationId} failed: DPS error ${failure.errorCode} ${known.name}: ${known.meaning}.${said}`,
      { ...details, ...(known.hint !== undefined && { hint: known.hint }) },
    );
  }
  if (failure.status?.toLowerCase() === 'disabled') {
    return new SampleDeviceError('disabled', `registration of ${context.registrationId} failed: the enrollment or registration is disabled in DPS.${said}`, {
      ...details,
      hint: 'Enable the enrollment (provisioningStatus: enabled) or ask the operator why it was disabled.',
    });
  }
  const name = isBag(error) && typeof error.name === 'string' ? error.name : '';
  if (failure.httpStatus === 401 || (failure.errorCode !== undefined && Math.floor(failure.errorCode / 1000) === 401) || name === 'UnauthorizedError') {
    const generic = DPS_ERRORS[401002]!;
    const code = failure.errorCode !== undefined ? `DPS error ${failure.errorCode}` : 'DPS answered unauthorized';
    return new SampleDeviceError('unauthorized', `registration of ${context.registrationId} failed: ${code}: ${generic.meaning}.${said}`, {
      ...details,
      ...(generic.hint !== undefined && { hint: generic.hint }),
    });
  }
  if (failure.errorCode !== undefined || failure.status?.toLowerCase() === 'failed' || failure.httpStatus !== undefined) {
    const what = failure.errorCode !== undefined ? `DPS error ${failure.errorCode}` : failure.httpStatus !== undefined ? `DPS answered ${failure.httpStatus}` : 'DPS reported status failed';
    const throttled = failure.httpStatus === 429 || (failure.errorCode !== undefined && Math.floor(failure.errorCode / 1000) === 429);
    return new SampleDeviceError('dps_failed', `registration of ${context.registrationId} failed: ${what}.${said}`, {
      ...details,
      ...(throttled && { hint: 'DPS is throttling registrations; retry later with backoff.' }),
    });
  }

  const socketCode = socketCodeOf(error);
  if (socketCode !== undefined && TLS_CODES.has(socketCode)) {
    return new SampleDeviceError('unreachable', `cannot reach DPS at ${where}: its TLS certificate is not trusted (${socketCode})`, {
      hint: 'For a local DPS pass its CA certificate with --ca FILE.',
    });
  }
  if (socketCode !== undefined && NETWORK_CODES.has(socketCode)) {
    return new SampleDeviceError('unreachable', `cannot reach DPS at ${where} (${socketCode})`, {
      hint: 'Check --host (and the port) and that nothing blocks the connection (MQTT uses 8883, HTTP 443 by default).',
    });
  }
  if (name === 'TimeoutError') {
    return new SampleDeviceError('timeout', `DPS at ${where} did not answer a request within the SDK's 30 s limit`);
  }
  if (name === 'NotConnectedError') {
    return new SampleDeviceError('unreachable', `cannot reach DPS at ${where} (the connection closed)`, {
      hint: 'Check --host (and the port) and --transport.',
    });
  }
  const message = isBag(error) && typeof error.message === 'string' ? redact(error.message) : 'unknown error';
  return new SampleDeviceError('internal', `registration of ${context.registrationId} failed unexpectedly: ${name !== '' ? `${name}: ` : ''}${message}`);
}
