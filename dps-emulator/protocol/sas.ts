/**
 * Shared access signatures for symmetric-key attestation (dps-protocol §3).
 *
 * `SharedAccessSignature sr={scope}/registrations/{id}&sig={urlencoded base64 HMAC}&se={epoch s}[&skn=registration]`
 * where the HMAC is over `sr + "\n" + se`. The Node SDK sends and signs `sr` unencoded; the docs' Python sample
 * URL-encodes `sr` and signs the encoded form. We accept both by checking the signature over the `sr` exactly as
 * it appears in the token, and comparing the decoded resource with the one we expect.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface ParsedSas {
  /** `sr` exactly as sent (encoded or not): the string the device signed. */
  readonly srRaw: string;
  /** `sr` URL-decoded, lower-cased: the resource it names. */
  readonly resource: string;
  readonly sig: Buffer;
  readonly se: number;
  readonly skn: string | undefined;
}

export type SasFailure = 'malformed' | 'wrong_resource' | 'wrong_key_name' | 'expired' | 'expiry_too_far' | 'bad_signature';

/**
 * Latest `se` accepted: now + 1 day. DPS documents no limit of its own; the SDKs sign for one hour (Node
 * `SymmetricKeySecurityClient`, Python `RenewableSasToken` default 3600 s), so a day leaves room for clock drift while
 * a leaked token cannot stay usable for years (issue 13 item 9; a choice, stated in docs/local-dps.md).
 */
export const MAX_SAS_LIFETIME_SECONDS = 24 * 3600;

export class SasError extends Error {
  constructor(readonly reason: SasFailure, message: string) {
    super(message);
    this.name = 'SasError';
  }
}

const PREFIX = 'SharedAccessSignature ';

/** Parses the token. Throws SasError('malformed'); the message never echoes the token. */
export function parseSas(token: string | undefined): ParsedSas {
  if (typeof token !== 'string' || !token.startsWith(PREFIX)) {
    throw new SasError('malformed', 'authorization is not a SharedAccessSignature');
  }
  const fields = new Map<string, string>();
  for (const part of token.slice(PREFIX.length).split('&')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new SasError('malformed', 'SharedAccessSignature has a field without a value');
    const name = part.slice(0, eq);
    if (fields.has(name)) throw new SasError('malformed', `SharedAccessSignature repeats "${name}"`);
    fields.set(name, part.slice(eq + 1));
  }
  const srRaw = fields.get('sr');
  const sigRaw = fields.get('sig');
  const seRaw = fields.get('se');
  if (!srRaw || !sigRaw || !seRaw) throw new SasError('malformed', 'SharedAccessSignature needs sr, sig and se');
  if (!/^\d{1,12}$/.test(seRaw)) throw new SasError('malformed', 'SharedAccessSignature se is not an epoch in seconds');
  let resource: string;
  let sigB64: string;
  try {
    resource = decodeURIComponent(srRaw).toLowerCase();
    sigB64 = decodeURIComponent(sigRaw);
  } catch {
    throw new SasError('malformed', 'SharedAccessSignature has bad percent-encoding');
  }
  if (!isBase64(sigB64)) throw new SasError('malformed', 'SharedAccessSignature sig is not base64');
  const skn = fields.get('skn');
  return { srRaw, resource, sig: Buffer.from(sigB64, 'base64'), se: Number(seRaw), skn };
}

/** The resource a device's SAS must name: `{idScope}/registrations/{registrationId}`, compared case-insensitively. */
export function sasResource(idScope: string, registrationId: string): string {
  return `${idScope}/registrations/${registrationId}`.toLowerCase();
}

export interface VerifySasInput {
  readonly sas: ParsedSas;
  readonly idScope: string;
  readonly registrationId: string;
  /** Base64 keys to try, e.g. [primary, secondary]. */
  readonly keys: readonly string[];
  readonly nowSeconds: number;
}

/**
 * Verifies a parsed SAS against the expected resource and candidate keys. Returns the index of the key that matched.
 * Checks the signature over every key (no early exit), so timing does not tell which key was close.
 */
export function verifySas({ sas, idScope, registrationId, keys, nowSeconds }: VerifySasInput): number {
  if (sas.resource !== sasResource(idScope, registrationId)) {
    throw new SasError('wrong_resource', 'SharedAccessSignature sr does not name this registration');
  }
  // The docs say the key name "should be set to registration" (iot-dps-mqtt-support) and the Node SDK sends it, but
  // the official Python SDK (azure-iot-device 2.14.0, provisioning/abstract_provisioning_device_client.py:
  // `RenewableSasToken(uri, signing_mechanism, ttl=...)`, no key name) sends none, and real DPS admits it. So: absent
  // is accepted; present, it must be "registration".
  if (sas.skn !== undefined && sas.skn !== 'registration') {
    throw new SasError('wrong_key_name', 'SharedAccessSignature skn must be "registration"');
  }
  if (sas.se <= nowSeconds) throw new SasError('expired', 'SharedAccessSignature has expired');
  if (sas.se > nowSeconds + MAX_SAS_LIFETIME_SECONDS) {
    throw new SasError('expiry_too_far', `SharedAccessSignature se is more than ${MAX_SAS_LIFETIME_SECONDS} s in the future`);
  }
  let matched = -1;
  keys.forEach((key, i) => {
    const expected = sign(key, sas.srRaw, sas.se);
    const ok = expected.length === sas.sig.length && timingSafeEqual(expected, sas.sig);
    if (ok && matched < 0) matched = i;
  });
  if (matched < 0) throw new SasError('bad_signature', 'SharedAccessSignature signature does not match');
  return matched;
}

/** HMAC-SHA256 over `sr + "\n" + se`: the signature of DPS and IoT Hub SAS tokens alike. */
export function signSas(keyB64: string, sr: string, se: number): Buffer {
  return sign(keyB64, sr, se);
}

function sign(keyB64: string, sr: string, se: number): Buffer {
  return createHmac('sha256', Buffer.from(keyB64, 'base64')).update(`${sr}\n${se}`, 'utf8').digest();
}

/**
 * Builds a token the way devices do. `encodeSr` chooses the Python-sample form (sr URL-encoded and signed encoded)
 * over the Node SDK form (sr raw). Used by tests and tools, never by the server.
 */
export function createSas(
  idScope: string,
  registrationId: string,
  keyB64: string,
  expirySeconds: number,
  opts: { encodeSr?: boolean } = {},
): string {
  const raw = `${idScope}/registrations/${registrationId}`;
  const sr = opts.encodeSr ? encodeURIComponent(raw) : raw;
  const sig = encodeURIComponent(sign(keyB64, sr, expirySeconds).toString('base64'));
  return `${PREFIX}sr=${sr}&sig=${sig}&se=${expirySeconds}&skn=registration`;
}

/** An enrollment group member's key: base64(HMAC-SHA256(base64decode(groupKey), utf8(registrationId))). */
export function deriveDeviceKey(groupKeyB64: string, registrationId: string): string {
  return createHmac('sha256', Buffer.from(groupKeyB64, 'base64')).update(registrationId, 'utf8').digest('base64');
}

/** Strict base64 (standard alphabet, padded), as DPS keys are. */
export function isBase64(value: string): boolean {
  return value.length > 0 && value.length % 4 === 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(value);
}
