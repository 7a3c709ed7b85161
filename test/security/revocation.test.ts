/**
 * Issue 13 item 6: revocation during a vault outage, and a storm of distinct ids against the vault.
 * Stale-if-error served a key the operator had since disabled for up to the TTL plus an hour; the default is now
 * five minutes past the TTL. And besides the cap on concurrent reads, a token bucket caps reads per second below Key
 * Vault's per-vault limit (4,000 GETs per 10 s, azure-cli-facts §3): over it a read waits a bounded time, then the
 * registration is answered 503 key_store_unavailable with retry-after, and DPS retries it.
 */
import { describe, expect, test } from 'vitest';
import { createWebhook } from '../../functions/app/compose.js';
import { loadConfig } from '../../functions/config.js';
import { WebhookError } from '../../functions/core/reasons.js';
import { createRateLimiter } from '../../functions/keys/cache.js';
import { parseKeyMaterial } from '../../functions/keys/parse.js';
import { NO_TAGS, type KeySource, type StoredKeySet } from '../../functions/keys/types.js';
import { allocationRequest, deviceToken, ID_SCOPE, makeDevice } from '../support/devices.js';

const VAULT = { KEY_VAULT_URL: 'https://kv.vault.azure.net', DPS_ID_SCOPE: ID_SCOPE };
// Key Vault: 4,000 GET per vault per 10 s, shared by every client of the vault.
const VAULT_GETS_PER_SECOND = 400;

describe('stale-if-error is bounded to minutes by default', () => {
  test('a key disabled during an outage stops being served 5 minutes past its TTL, not an hour', async () => {
    const device = await makeDevice('sensor-revoked');
    const stored: StoredKeySet = { keys: await parseKeyMaterial(device.publicPem, ['ES256'], 'pem'), enabled: true, tags: NO_TAGS, origin: 'device-sensor-revoked' };
    let vaultDown = false;
    // The operator disables the secret, then the vault goes down before the cache sees it.
    const source: KeySource = {
      names: ({ registrationId }) => [`device-${registrationId}`],
      store: {
        async read() {
          if (vaultDown) throw new WebhookError('key_store_unavailable', 'Key Vault answered HTTP 500');
          return stored;
        },
      },
    };
    let clock = Date.parse('2026-11-21T12:00:00Z');
    const config = loadConfig(VAULT);
    expect(config.keyCache.staleIfErrorMs).toBe(300_000);
    const webhook = await createWebhook(config, { now: () => clock, keyStore: source });
    const ask = async () => {
      const token = await deviceToken(device, Math.floor(clock / 1000));
      return webhook.handle({ body: JSON.stringify(allocationRequest({ registrationId: device.id, token })) });
    };
    const start = clock;
    expect((await ask()).status).toBe(200);
    vaultDown = true;
    clock = start + config.keyCache.ttlMs + 4 * 60_000; // inside the window: the trade-off, documented
    expect((await ask()).status).toBe(200);
    clock = start + config.keyCache.ttlMs + 5 * 60_000 + 1_000;
    const late = await ask();
    expect(late.status).toBe(503);
    expect(late.body).toMatchObject({ code: 'key_store_unavailable' });
  });
});

describe('a read-rate limit below the vault throttling', () => {
  test('the Key Vault default is well below the per-vault GET limit', () => {
    const perSecond = loadConfig(VAULT).keyCache.maxReadsPerSecond;
    expect(perSecond).toBeGreaterThan(0);
    expect(perSecond).toBeLessThanOrEqual(VAULT_GETS_PER_SECOND / 2);
  });

  test('a storm of 1,000 distinct ids reaches the store at the configured rate; the rest get 503 with retry-after', async () => {
    let reads = 0;
    const source: KeySource = {
      names: ({ registrationId }) => [`device-${registrationId}`],
      store: {
        async read() {
          reads += 1;
          return undefined; // nobody on file: a 403 each, which is all a storm of made-up ids earns
        },
      },
    };
    const config = loadConfig({ ...VAULT, KEY_STORE_MAX_READS_PER_SECOND: '50', KEY_STORE_TIMEOUT_MS: '400' });
    const webhook = await createWebhook(config, { keyStore: source });
    const device = await makeDevice('storm');
    const token = await deviceToken(device, Math.floor(Date.now() / 1000));
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 1_000 }, (_, i) => webhook.handle({ body: JSON.stringify(allocationRequest({ registrationId: `storm-${i}`, token })) })),
    );
    const seconds = (performance.now() - started) / 1000;
    // A full bucket (50) at once, then 50 a second for as long as the storm lasted.
    expect(reads).toBeGreaterThanOrEqual(50);
    expect(reads).toBeLessThanOrEqual(50 + Math.ceil(50 * seconds) + 1);
    const throttled = answers.filter((a) => a.status === 503);
    expect(throttled.length).toBe(1_000 - reads);
    for (const answer of throttled) {
      expect(answer.body).toMatchObject({ code: 'key_store_unavailable' });
      expect(answer.headers['retry-after']).toBeDefined();
    }
    expect(answers.filter((a) => a.status === 403).length).toBe(reads);
  });

  test('the bucket: a burst of one second, then one read per interval; a turn too far away is refused at once', async () => {
    let clock = 0;
    const bucket = createRateLimiter(10, () => clock);
    for (let i = 0; i < 10; i += 1) await bucket.take(0);
    await expect(bucket.take(0)).rejects.toMatchObject({ code: 'key_store_unavailable' });
    clock = 100; // one interval later: one more
    await bucket.take(0);
    await expect(bucket.take(0)).rejects.toMatchObject({ code: 'key_store_unavailable' });
    clock = 10_000; // idle: full again, never more than one second's worth
    for (let i = 0; i < 10; i += 1) await bucket.take(0);
    await expect(bucket.take(0)).rejects.toMatchObject({ code: 'key_store_unavailable' });
    expect(await Promise.race([bucket.take(150).then(() => 'waited'), new Promise((r) => setTimeout(() => r('timeout'), 1_000))])).toBe('waited');
  });

  test('0 turns the limit off (the key folder default)', async () => {
    const bucket = createRateLimiter(0, () => 0);
    for (let i = 0; i < 10_000; i += 1) await bucket.take(0);
  });
});
