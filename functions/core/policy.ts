/**
 * The policy the core decides by, and its fixed limits. Plain types and constants: config.ts fills them from
 * settings, the core reads them; nothing here knows where a value came from.
 */

export interface TwinTemplate {
  readonly tags?: Readonly<Record<string, unknown>>;
  readonly properties?: { readonly desired?: Readonly<Record<string, unknown>> };
}

export interface TokenPolicy {
  /** JWS algorithms accepted; never `none` or an HMAC algorithm. */
  readonly algorithms: readonly string[];
  readonly maxLifetimeSeconds: number;
  readonly clockSkewSeconds: number;
  /** This DPS's id scope: a token's `aud` / `id_scope`, when present, must name it (absent: any named scope is refused). */
  readonly idScope?: string;
  /** `aud` or `id_scope` must be present (DPS_ID_SCOPE_CHECK not `off`). */
  readonly requireAudience: boolean;
  /** With replay protection on, every token needs a `jti`. */
  readonly requireJti: boolean;
}

/** Algorithms a device key can use. HMAC and `none` are absent on purpose: a public key is never an HMAC secret. */
export const SUPPORTED_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA', 'Ed25519'] as const;

export const MAX_REQUEST_BYTES = 64 * 1024;
export const MAX_TOKEN_BYTES = 4 * 1024;

const HOST_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

export function isHostName(value: string): boolean {
  return HOST_NAME.test(value);
}

/**
 * IoT Hub's device twin limits, which bind the `initialTwin` the webhook answers (IoT Hub rejects a whole twin that
 * breaks one). Source: Microsoft Learn, "Understand and use device twins in IoT Hub"
 * (iot-hub/iot-hub-devguide-device-twins, sections "Tags and properties format" and "Device twin size").
 */
export const TWIN_LIMITS = {
  /** `tags` in all, counted as IoT Hub counts (key and value lengths; see twin.ts). */
  tagsBytes: 8 * 1024,
  /** `properties.desired` in all. */
  desiredBytes: 32 * 1024,
  /** Objects nested below `tags` / `properties.desired`: `tags.one.two…ten.property` is the deepest valid path. */
  depth: 10,
  /** A key, in UTF-8. */
  keyBytes: 1024,
  /** A string value, in UTF-8. */
  stringBytes: 4 * 1024,
  minInteger: -4503599627370496,
  maxInteger: 4503599627370495,
} as const;
