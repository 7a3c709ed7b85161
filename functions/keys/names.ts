import { createHash } from 'node:crypto';

/**
 * Key Vault secret names: 1-127 characters of [0-9a-zA-Z-], compared case-insensitively by the vault. DPS
 * registration ids are case-insensitive too, so ids are lower-cased first. An id that is already a legal name
 * fragment maps to a readable name; any other id (dots, colons, underscores, or too long) maps to a hash under a
 * different prefix, so the two forms can never collide.
 */
const PLAIN = /^[a-z0-9-]{1,119}$/;

function secretName(prefix: string, hashedPrefix: string, id: string): string {
  const lower = id.toLowerCase();
  if (PLAIN.test(lower)) return `${prefix}-${lower}`;
  return `${hashedPrefix}-${createHash('sha256').update(lower, 'utf8').digest('hex')}`;
}

/** `device-<id>` for ids of [a-z0-9-]; otherwise `devicehash-<sha256 hex of the lower-cased id>`. */
export function deviceSecretName(registrationId: string): string {
  return secretName('device', 'devicehash', registrationId);
}

/** `group-<id>` for ids of [a-z0-9-]; otherwise `grouphash-<sha256 hex of the lower-cased id>`. */
export function groupSecretName(enrollmentGroupId: string): string {
  return secretName('group', 'grouphash', enrollmentGroupId);
}
