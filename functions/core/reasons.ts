/**
 * Every answer the webhook gives has a stable reason code. This is the one table that maps a code to the HTTP
 * status DPS sees, and so to what the device sees (dps-protocol §2): a 4xx below 429 ends the registration at once
 * (400207 CustomAllocationFailed), 503 makes DPS retry, 200 assigns.
 */
export const REASONS = {
  assigned: { status: 200, summary: 'Token verified; hub assigned.' },

  // The AllocationRequest itself is unusable: a broken caller, not a device.
  request_too_large: { status: 413, summary: 'The request body is over the size limit.' },
  request_content_type: { status: 400, summary: 'The request is not application/json.' },
  request_not_json: { status: 400, summary: 'The request body is not valid JSON.' },
  request_invalid: { status: 400, summary: 'The AllocationRequest does not have the documented shape.' },
  request_incomplete: { status: 400, summary: 'The caller hung up or reset the connection before the whole body arrived.' },

  // The device is refused: nothing a retry would change.
  token_missing: { status: 403, summary: 'deviceRuntimeContext.payload.jwt is absent.' },
  token_too_large: { status: 403, summary: 'The token is over the size limit.' },
  token_malformed: { status: 403, summary: 'The token is not a compact JWS with a JSON claims set.' },
  token_header_forbidden: { status: 403, summary: 'The token header carries a key, a key URL, or crit/b64.' },
  token_algorithm_not_allowed: { status: 403, summary: 'The token algorithm is not in the allow-list.' },
  token_key_unknown: { status: 403, summary: "The token's kid matches none of the device's keys." },
  token_signature_invalid: { status: 403, summary: "The signature does not verify with the device's key." },
  token_claim_missing: { status: 403, summary: 'A required claim (exp, iat, sub/registration_id, aud/id_scope) is absent.' },
  token_claim_invalid: { status: 403, summary: 'A claim has the wrong type or format.' },
  token_expired: { status: 403, summary: 'exp is in the past.' },
  token_not_yet_valid: { status: 403, summary: 'nbf is in the future.' },
  token_issued_in_future: { status: 403, summary: 'iat is in the future.' },
  token_lifetime_too_long: { status: 403, summary: 'exp - iat is over the configured cap.' },
  token_registration_mismatch: { status: 403, summary: 'sub/registration_id names another registration.' },
  token_audience_mismatch: { status: 403, summary: 'aud/id_scope names another DPS id scope.' },
  token_jti_missing: { status: 403, summary: 'Replay protection is on and the token has no jti.' },
  token_replayed: { status: 403, summary: 'This jti was already used.' },
  token_replay_budget_exceeded: { status: 403, summary: 'This registration already has its budget of unexpired tokens on record.' },
  device_key_not_found: { status: 403, summary: 'No public key is on file for this device.' },
  device_key_disabled: { status: 403, summary: "The device's key is disabled (not yet activated, or revoked)." },
  device_key_unusable: { status: 403, summary: "The stored key is not a usable public key for an allowed algorithm." },

  // Our own transient faults: DPS retries (10 tries over about 8 minutes).
  key_store_unavailable: { status: 503, summary: 'The key store timed out, throttled, or failed.' },
  key_store_access_denied: { status: 503, summary: "The webhook's identity may not read the key store." },
  replay_store_unavailable: { status: 503, summary: 'The replay store could not record the jti.' },
  webhook_misconfigured: { status: 503, summary: 'A setting of the webhook cannot work; its log names the setting.' },
  internal_error: { status: 500, summary: 'An unexpected fault in the webhook.' },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ReasonCode = keyof typeof REASONS;

/**
 * What an operator does about each code: the second half of `fleet explain`'s answer (REASONS says what happened).
 * Plain text, never a value from the request.
 */
export const REASON_HINTS: Readonly<Record<ReasonCode, string>> = {
  assigned: 'Nothing to do: the webhook admits this device.',
  request_too_large: 'DPS sent an oversized request: check the enrollment\'s initial twin and custom allocation settings.',
  request_content_type: 'Whatever calls the webhook is not DPS (or a proxy rewrote the request): DPS sends application/json.',
  request_not_json: 'Whatever calls the webhook is not DPS (or a proxy rewrote the request).',
  request_invalid: 'Check the registration id, the enrollment group id and the linked hubs; the message names the field.',
  request_incomplete: 'The caller hung up mid-request: a network fault between DPS and the function, not the device.',
  token_missing: 'The device sent no payload.jwt: it must send its token as the registration payload {"jwt": "..."}.',
  token_too_large: 'The device signs too much into its token: keep it under 4 KiB (drop extra claims).',
  token_malformed: 'The device does not send a compact JWS with a JSON claims set: check its token code.',
  token_header_forbidden: 'The token header must not carry a key or key URL (jwk, jku, x5u, x5c, x5t), crit or b64; typ must be JWT.',
  token_algorithm_not_allowed: 'The device signs with an algorithm outside JWT_ALGORITHMS: widen JWT_ALGORITHMS, or fix the device.',
  token_key_unknown: "The token's kid names no key on file: store the device's new key (fleet import --replace), or fix the device's kid.",
  token_signature_invalid: "The key on file is not this device's: check the stored key's public-key-sha256 against the device's, and re-import it.",
  token_claim_missing: 'The device must sign exp and iat, sub or registration_id, and aud or id_scope (DPS_ID_SCOPE).',
  token_claim_invalid: 'A claim has the wrong type (exp/iat numbers, sub/aud/id_scope strings, jti 1-256 characters): fix the device.',
  token_expired: "The device's clock is behind, or it reuses an old token: set its clock (NTP), sign a fresh token at each registration.",
  token_not_yet_valid: "The device's clock is ahead (nbf): set its clock, or raise JWT_CLOCK_SKEW_SECONDS.",
  token_issued_in_future: "The device's clock is ahead (iat): set its clock, or raise JWT_CLOCK_SKEW_SECONDS.",
  token_lifetime_too_long: 'The device signs tokens valid too long: sign short-lived ones, or raise JWT_MAX_LIFETIME_SECONDS.',
  token_registration_mismatch: 'The token names another registration id: the device must sign its own id as sub / registration_id.',
  token_audience_mismatch: "The token names another DPS id scope: the device must sign DPS_ID_SCOPE's value as aud / id_scope.",
  token_jti_missing: 'Replay protection is on (REPLAY_STORE): the device must sign a fresh jti into each token.',
  token_replayed: 'The device resent a token already used: it must sign a fresh token (new jti) for each registration.',
  token_replay_budget_exceeded: 'Too many unexpired tokens on record for this device: wait for them to expire, or have it sign shorter-lived ones.',
  device_key_not_found: "No key is on file under any name tried: import the device's public key (register-key.sh, fleet import).",
  device_key_disabled: 'The key entry is disabled (not activated yet, or revoked): enable it (scripts/activate.sh for Key Vault, "enabled": true in its .meta in a key folder, or the portal).',
  device_key_unusable: 'What is stored is not a usable public key for JWT_ALGORITHMS: re-import the public key (SPKI PEM or public JWK).',
  key_store_unavailable: 'The key store failed or timed out: check the vault (or key folder) and its network; DPS retries meanwhile.',
  key_store_access_denied: "The identity may not read secrets: grant it Key Vault Secrets User on the vault.",
  replay_store_unavailable: 'The replay table could not record the jti: check the storage account and REPLAY_TABLE_* settings.',
  webhook_misconfigured: 'A setting cannot work: the start log line names it; fix it and restart the app.',
  internal_error: 'A bug in the webhook: report it with the decision log line.',
};

export function statusOf(code: ReasonCode): number {
  return REASONS[code].status;
}

/** A decision to refuse, carrying its reason code. `message` is safe to return and log: it never holds secrets. */
export class WebhookError extends Error {
  readonly code: ReasonCode;
  /** The HTTP status a store answered, when the refusal is a store's answer (telemetry counts Key Vault 429s by it). */
  readonly httpStatus?: number;
  constructor(code: ReasonCode, message: string = REASONS[code].summary, options?: { cause?: unknown; httpStatus?: number }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'WebhookError';
    this.code = code;
    if (options?.httpStatus !== undefined) this.httpStatus = options.httpStatus;
  }
}
