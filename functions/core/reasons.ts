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

export function statusOf(code: ReasonCode): number {
  return REASONS[code].status;
}

/** A decision to refuse, carrying its reason code. `message` is safe to return and log: it never holds secrets. */
export class WebhookError extends Error {
  readonly code: ReasonCode;
  constructor(code: ReasonCode, message: string = REASONS[code].summary, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WebhookError';
    this.code = code;
  }
}
