import type { JWTPayload, ProtectedHeaderParameters } from 'jose';
import { usageError } from '../errors.js';
import { loadPrivateKeyFile } from '../key-file.js';
import { assertJti, assertLifetime, assertRegistrationId, describeToken, privateKeyThumbprint, signDeviceToken } from '../jwt.js';

export interface TokenOptions {
  readonly privateKeyFile: string;
  readonly registrationId: string;
  readonly idScope?: string;
  /** Goes into the `provisioning_host` claim, as in the Python sample. */
  readonly host?: string;
  readonly lifetimeSeconds?: number;
  readonly kid?: string;
  /** Seconds since the epoch; defaults to the clock. */
  readonly now?: number;
  /** A fixed jti instead of a random UUID (test vectors). */
  readonly jti?: string;
}

export interface TokenResult {
  /** The compact JWS. This command exists to show it; `register` never prints it. */
  readonly token: string;
  readonly header: ProtectedHeaderParameters;
  readonly claims: JWTPayload;
  /** Thumbprint of the signing key's public half. */
  readonly thumbprint: string;
}

/** Signs a fresh registration token exactly as `register` would, for inspection. */
export async function token(options: TokenOptions): Promise<TokenResult> {
  // Argument errors first, so a typo is reported before any file is touched.
  assertRegistrationId(options.registrationId);
  if (options.lifetimeSeconds !== undefined) assertLifetime(options.lifetimeSeconds);
  if (options.kid !== undefined && options.kid.trim() === '') throw usageError('--kid', 'must not be empty');
  if (options.jti !== undefined) assertJti(options.jti);
  const privateKey = await loadPrivateKeyFile(options.privateKeyFile);
  const jwt = await signDeviceToken({
    privateKey,
    registrationId: options.registrationId,
    ...(options.idScope !== undefined && { idScope: options.idScope }),
    ...(options.host !== undefined && { provisioningHost: options.host }),
    ...(options.lifetimeSeconds !== undefined && { lifetimeSeconds: options.lifetimeSeconds }),
    ...(options.kid !== undefined && { kid: options.kid }),
    ...(options.now !== undefined && { now: options.now }),
    ...(options.jti !== undefined && { jti: options.jti }),
  });
  const { header, claims } = describeToken(jwt);
  return { token: jwt, header, claims, thumbprint: await privateKeyThumbprint(privateKey) };
}
