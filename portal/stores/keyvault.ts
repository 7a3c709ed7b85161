import { createHash } from 'node:crypto';
import type { TokenCredential } from '@azure/identity';
import { SecretClient, type SecretProperties } from '@azure/keyvault-secrets';
import { deviceSecretName } from '../../functions/keys/names.js';
import type { DeviceKeyState, DeviceKeyStore, UpdateResult } from '../core/ports.js';

/**
 * Device keys in Key Vault, through the real SDK, never reading a value (the portal needs none, and a disabled
 * secret's value is refused with 403 SecretDisabled anyway, azure-cli-facts §3):
 *
 * - list: `listPropertiesOfSecrets` (GET /secrets, paged): names, `enabled`, tags, disabled ones included. Only
 *   readable names (`device-<id>`) can be listed by id; a hashed name (`devicehash-...`, an id with '.', ':' or '_')
 *   is found by searching its exact id.
 * - state: `listPropertiesOfSecretVersions` (GET /secrets/{name}/versions): the current version is the newest one.
 * - update: `updateSecretProperties` (PATCH /secrets/{name}/{version}) enables/disables and replaces the tags.
 *
 * Key Vault has no conditional update (no etag, no If-Match), so a lost update is prevented in three steps: the portal
 * core runs one device's changes one after the other in the process; here the state's version is
 * `<secret version>@<updated time>#<digest of enabled and tags>` and is re-read just before the PATCH (refused as a
 * conflict when it moved); and after the PATCH the state is read again and must be exactly what was written, else the user is told it raced (conflict). Two portal
 * instances writing the same device within the same few milliseconds can still both pass the check; the second write
 * wins whole (tags are replaced as a set, never merged half-way) and the re-read tells its author if it was overtaken.
 */
export interface KeyVaultDeviceStoreOptions {
  readonly url: string;
  readonly credential: TokenCredential;
  readonly disableChallengeResourceVerification?: boolean;
}

const DEVICE_PREFIX = 'device-';

/**
 * The vault's `updated` time has whole seconds, so the version also carries a digest of what the portal decides on
 * (enabled + tags): a change within the same second still moves it.
 */
function stateOf(id: string, props: SecretProperties): DeviceKeyState {
  const enabled = props.enabled !== false;
  const tags = { ...props.tags };
  const content = createHash('sha256')
    .update(JSON.stringify([enabled, Object.entries(tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]))
    .digest('base64url')
    .slice(0, 16);
  return { id, enabled, tags, version: `${props.version ?? ''}@${props.updatedOn?.getTime() ?? 0}#${content}` };
}

function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { statusCode?: number }).statusCode === 404;
}

export function createKeyVaultDeviceStore(options: KeyVaultDeviceStoreOptions): DeviceKeyStore {
  const client = new SecretClient(options.url, options.credential, {
    disableChallengeResourceVerification: options.disableChallengeResourceVerification ?? false,
    userAgentOptions: { userAgentPrefix: 'dps-jwt-webhook-portal' },
  });
  const host = new URL(options.url).host;

  async function current(name: string): Promise<SecretProperties | undefined> {
    let newest: SecretProperties | undefined;
    try {
      for await (const props of client.listPropertiesOfSecretVersions(name)) {
        if (newest === undefined || (props.createdOn?.getTime() ?? 0) >= (newest.createdOn?.getTime() ?? 0)) newest = props;
      }
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    return newest;
  }

  const sameTags = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) => {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
  };

  return {
    description: `Key Vault ${host}`,
    async listDisabled() {
      const out: DeviceKeyState[] = [];
      for await (const props of client.listPropertiesOfSecrets()) {
        if (props.enabled === false && props.name.startsWith(DEVICE_PREFIX)) out.push(stateOf(props.name.slice(DEVICE_PREFIX.length), props));
      }
      return out;
    },
    async get(id) {
      const props = await current(deviceSecretName(id));
      return props === undefined ? undefined : stateOf(id, props);
    },
    async update(id, expectedVersion, next): Promise<UpdateResult> {
      const name = deviceSecretName(id);
      const before = await current(name);
      if (before === undefined) return 'not_found';
      if (stateOf(id, before).version !== expectedVersion || before.version === undefined) return 'conflict';
      await client.updateSecretProperties(name, before.version, { enabled: next.enabled, tags: { ...next.tags } });
      const after = await current(name);
      if (after === undefined) return 'not_found';
      const written = after.version === before.version && (after.enabled !== false) === next.enabled && sameTags(after.tags ?? {}, next.tags);
      return written ? 'updated' : 'conflict';
    },
  };
}
