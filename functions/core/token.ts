import { decodeProtectedHeader, errors, jwtVerify, type CryptoKey, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import { MAX_TOKEN_BYTES, type TokenPolicy } from './policy.js';
import { UNOBSERVED, type CheckProgress } from './checks.js';
import type { VerificationKey } from './ports.js';
import { WebhookError } from './reasons.js';
import { asciiLower } from './request.js';

export interface TokenHeader {
  readonly alg: string;
  readonly kid?: string;
}

export interface VerifiedToken {
  readonly claims: JWTPayload;
  readonly key: VerificationKey;
  /** Seconds since the epoch at which the token stops being valid, for replay bookkeeping. */
  readonly exp: number;
  readonly jti?: string;
  /** The clock reading (ms) the token was judged valid at; the replay store judges liveness at the same instant. */
  readonly verifiedAtMs: number;
}

// A compact JWS: three base64url segments. A JWE has five, JSON serialization starts with '{'.
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
// Header members that would let the token choose its own key or change how it is processed (RFC 8725 §3.1, §3.10).
const FORBIDDEN_HEADER_MEMBERS = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit', 'b64', 'zip', 'enc'];

/**
 * The checks that need no key: shape, size, and header. They run before any key lookup, so a garbage token never
 * costs a Key Vault read. Decisions here only ever refuse; nothing is trusted before the signature verifies.
 */
export function inspectToken(token: unknown, payloadKind: 'absent' | 'object' | 'other', policy: TokenPolicy): TokenHeader {
  if (payloadKind === 'other') throw new WebhookError('token_missing', 'deviceRuntimeContext.payload must be a JSON object');
  if (token === undefined || token === null) throw new WebhookError('token_missing', 'deviceRuntimeContext.payload.jwt is absent');
  if (typeof token !== 'string') throw new WebhookError('token_malformed', 'deviceRuntimeContext.payload.jwt must be a string');
  if (token.length > MAX_TOKEN_BYTES) throw new WebhookError('token_too_large', `the token is over ${MAX_TOKEN_BYTES} bytes`);
  if (!COMPACT_JWS.test(token)) throw new WebhookError('token_malformed', 'the token is not a compact JWS (header.payload.signature)');

  let header: ProtectedHeaderParameters;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new WebhookError('token_malformed', 'the token header is not a base64url JSON object');
  }
  for (const member of FORBIDDEN_HEADER_MEMBERS) {
    if (Object.hasOwn(header, member)) throw new WebhookError('token_header_forbidden', `the token header must not carry "${member}"`);
  }
  if (header.typ !== undefined && (typeof header.typ !== 'string' || !/^(application\/)?jwt$/i.test(header.typ))) {
    throw new WebhookError('token_header_forbidden', 'the token header "typ" must be JWT when present');
  }
  const { alg, kid } = header;
  if (typeof alg !== 'string' || !policy.algorithms.includes(alg)) {
    throw new WebhookError('token_algorithm_not_allowed', `the token algorithm must be one of ${policy.algorithms.join(', ')}`);
  }
  if (kid !== undefined && (typeof kid !== 'string' || kid.length === 0 || kid.length > 256)) {
    throw new WebhookError('token_malformed', 'the token header "kid" must be a string of 1-256 characters');
  }
  return kid === undefined ? { alg } : { alg, kid };
}

/**
 * The keys a token may be checked with: those for its algorithm whose kid equals the token's, plus keys stored
 * without a kid (a plain PEM). Empty when the token names a kid the device does not have.
 */
export function candidateKeys(keys: readonly VerificationKey[], header: TokenHeader): VerificationKey[] {
  return keys.filter((k) => k.alg === header.alg && (k.kid === undefined || header.kid === undefined || k.kid === header.kid));
}

function optionalString(claims: JWTPayload, name: string): string | undefined {
  const value = claims[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new WebhookError('token_claim_invalid', `the "${name}" claim must be a string`);
  return value;
}

function mapJoseError(error: unknown): WebhookError {
  if (error instanceof WebhookError) return error;
  if (error instanceof errors.JWTExpired) {
    return error.claim === 'exp'
      ? new WebhookError('token_expired', 'the token has expired')
      : new WebhookError('token_lifetime_too_long', `the "${error.claim}" claim is too old`);
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === 'missing') return new WebhookError('token_claim_missing', `the "${error.claim}" claim is required`);
    if (error.claim === 'nbf' && error.reason === 'check_failed') return new WebhookError('token_not_yet_valid', 'the token is not valid yet (nbf)');
    return new WebhookError('token_claim_invalid', `the "${error.claim}" claim is invalid`);
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return new WebhookError('token_algorithm_not_allowed');
  if (error instanceof errors.JOSENotSupported) return new WebhookError('token_header_forbidden', 'the token uses an unsupported JOSE feature');
  if (error instanceof errors.JOSEError) return new WebhookError('token_malformed', 'the token could not be parsed');
  // jose reports every fault of the token as a JOSEError; what it throws otherwise (a TypeError such as "RS256
  // requires key modulusLength to be 2048 bits or larger") is about the key it was handed: the stored key is unusable.
  return new WebhookError('device_key_unusable', 'the stored key cannot verify this algorithm', { cause: error });
}

const REQUIRED_CLAIMS: string[] = ['exp', 'iat'];
const ALGORITHM_LISTS = new Map<string, string[]>();
const onlyAlgorithm = (alg: string): string[] => {
  let list = ALGORITHM_LISTS.get(alg);
  if (list === undefined) ALGORITHM_LISTS.set(alg, (list = [alg]));
  return list;
};

/**
 * Verifies signature and claims with jose, then the rules jose does not know: iat not in the future, a lifetime
 * cap, and the binding of the token to this registration and to this DPS id scope.
 */
export async function verifyToken(
  token: string,
  header: TokenHeader,
  keys: readonly VerificationKey[],
  policy: TokenPolicy,
  registrationId: string,
  nowMs: number,
  importKey: (key: VerificationKey) => CryptoKey | Promise<CryptoKey>,
  progress: CheckProgress = UNOBSERVED,
): Promise<VerifiedToken> {
  const candidates = candidateKeys(keys, header);
  if (candidates.length === 0) {
    throw new WebhookError('token_key_unknown', header.kid === undefined
      ? `no key of this device verifies ${header.alg}`
      : "the token's kid matches none of this device's keys");
  }
  progress.pass('key-id', header.kid);

  let claims: JWTPayload | undefined;
  let used: VerificationKey | undefined;
  for (const candidate of candidates) {
    try {
      // An imported key comes back as it is (no promise to await); the option lists are shared, jose only reads them.
      const imported = importKey(candidate);
      ({ payload: claims } = await jwtVerify(token, imported instanceof Promise ? await imported : imported, {
        algorithms: onlyAlgorithm(candidate.alg),
        clockTolerance: policy.clockSkewSeconds,
        currentDate: new Date(nowMs),
        requiredClaims: REQUIRED_CLAIMS,
      }));
      used = candidate;
      break;
    } catch (error) {
      // A device may hold several keys (rotation); only a signature mismatch means "try the next one".
      if (error instanceof errors.JWSSignatureVerificationFailed) continue;
      // jose judges the claims only once the signature verified.
      if (error instanceof errors.JWTClaimValidationFailed || error instanceof errors.JWTExpired || error instanceof errors.JWTInvalid) progress.pass('signature');
      throw mapJoseError(error);
    }
  }
  if (claims === undefined || used === undefined) {
    throw new WebhookError('token_signature_invalid', "the token signature does not verify with this device's key");
  }
  progress.pass('signature');

  // jose has checked that exp and iat are present numbers.
  const now = nowMs / 1000;
  const iat = claims.iat as number;
  const exp = claims.exp as number;
  if (iat > now + policy.clockSkewSeconds) throw new WebhookError('token_issued_in_future', 'the token was issued in the future (iat)');
  if (exp - iat > policy.maxLifetimeSeconds) {
    throw new WebhookError('token_lifetime_too_long', `the token lifetime (exp - iat) is over ${policy.maxLifetimeSeconds} s`);
  }
  progress.pass('token-times');

  const subject = optionalString(claims, 'sub');
  const claimedId = optionalString(claims, 'registration_id');
  if (subject === undefined && claimedId === undefined) {
    throw new WebhookError('token_claim_missing', 'the token must name its registration in "sub" or "registration_id"');
  }
  const wanted = asciiLower(registrationId);
  for (const claimed of [subject, claimedId]) {
    if (claimed !== undefined && asciiLower(claimed) !== wanted) {
      throw new WebhookError('token_registration_mismatch', 'the token was issued for another registration');
    }
  }
  progress.pass('registration');

  checkAudience(claims, policy);
  progress.pass('audience');

  const jti = optionalString(claims, 'jti');
  if (jti !== undefined && (jti.length === 0 || jti.length > 256)) {
    throw new WebhookError('token_claim_invalid', 'the "jti" claim must be 1-256 characters');
  }
  return { claims, key: used, exp, verifiedAtMs: nowMs, ...(jti !== undefined && { jti }) };
}

/**
 * `aud` / `id_scope` bind a token to one DPS. Required by default; with the check off (`requireAudience: false`, for
 * fleets whose tokens carry no audience) they may be absent, but a token that names a scope must name ours in every
 * mode. With the check off and no scope configured, any named scope is refused: we cannot tell it is ours.
 */
function checkAudience(claims: JWTPayload, policy: TokenPolicy): void {
  const aud = claims.aud;
  if (aud !== undefined && typeof aud !== 'string' && !(Array.isArray(aud) && aud.every((a) => typeof a === 'string'))) {
    throw new WebhookError('token_claim_invalid', 'the "aud" claim must be a string or an array of strings');
  }
  const idScope = optionalString(claims, 'id_scope');
  if (aud === undefined && idScope === undefined) {
    if (policy.requireAudience) throw new WebhookError('token_claim_missing', 'the token must name its DPS id scope in "aud" or "id_scope"');
    return;
  }
  const ours = policy.idScope;
  const audOk = aud === undefined || (ours !== undefined && (typeof aud === 'string' ? aud === ours : aud.includes(ours)));
  if (!audOk || (idScope !== undefined && idScope !== ours)) {
    throw new WebhookError('token_audience_mismatch', 'the token was issued for another DPS id scope');
  }
}
