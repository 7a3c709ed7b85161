/**
 * Section 5's webhook side, run as its own process by run.ts: a cold registration storm against the Key Vault path,
 * through the real SDK (`createWebhook` with KEY_VAULT_URL -> SecretClient + DefaultAzureCredential). run.ts keeps
 * the Key Vault and managed identity stand-ins in its own process (the vault is remote; its work is not the
 * webhook's) and counts the reads there.
 *
 * All registrations start at once on an empty cache. A 503 is retried after its Retry-After, as DPS retries,
 * for at most MAX_WAVES waves, so every device is admitted in the end and the vault reads can be counted per device.
 *
 * A process of its own because TLS trust comes from NODE_EXTRA_CA_CERTS, which Node reads only at start, and the
 * managed identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER, pointing at the loopback stand-in) is in the
 * environment from the first instruction, before anything can build a credential.
 *
 * Usage: node dist/bench/storm.js <bodies.json>   (settings in the environment, as app settings)
 */
import { readFileSync } from 'node:fs';
import { createWebhook } from '../functions/app/compose.js';
import { loadConfig } from '../functions/config.js';
import { guardLoopback } from './support.js';

// Loopback only: refuse (and count) any connection elsewhere, such as the IMDS address or a login endpoint.
const guard = guardLoopback();

const MAX_WAVES = 10;
const file = process.argv[2];
if (file === undefined || !/^http:\/\/(127\.0\.0\.1|localhost)[:/]/.test(process.env.IDENTITY_ENDPOINT ?? '')) {
  throw new TypeError('storm.js is started by run.ts, with IDENTITY_ENDPOINT on loopback and a bodies file');
}
const bodies = JSON.parse(readFileSync(file, 'utf8')) as string[];

const webhook = await createWebhook(loadConfig(process.env));
const waves: Array<{ sent: number; ok: number; retry: number; other: number; seconds: number; p99Ms: number; retryAfterSeconds: number }> = [];
let pending = bodies;
const started = performance.now();
for (let wave = 0; wave < MAX_WAVES && pending.length > 0; wave++) {
  const t0 = performance.now();
  const retry: string[] = [];
  let ok = 0;
  let other = 0;
  let retryAfterSeconds = 0;
  const latencies = await Promise.all(
    pending.map(async (body) => {
      const t = performance.now();
      const answer = await webhook.handle({ body, contentType: 'application/json' });
      if (answer.status === 200) ok += 1;
      else if (answer.status === 503) {
        retry.push(body);
        retryAfterSeconds = Math.max(retryAfterSeconds, Number(answer.headers['retry-after'] ?? 1));
      } else other += 1;
      return performance.now() - t;
    }),
  );
  latencies.sort((a, b) => a - b);
  waves.push({ sent: pending.length, ok, retry: retry.length, other, seconds: (performance.now() - t0) / 1000, p99Ms: latencies[Math.ceil(0.99 * latencies.length) - 1] ?? 0, retryAfterSeconds });
  pending = retry;
  // As DPS does: come back after Retry-After.
  if (pending.length > 0) await new Promise((resolve) => setTimeout(resolve, retryAfterSeconds * 1000));
}
await webhook.close();

process.stdout.write(
  `${JSON.stringify({
    registrations: bodies.length,
    ok: waves.reduce((sum, w) => sum + w.ok, 0),
    refused: waves.reduce((sum, w) => sum + w.other, 0),
    unanswered: pending.length,
    waves,
    secondsToAdmitAll: (performance.now() - started) / 1000,
    cacheReads: webhook.keyCache.stats.reads,
    blockedConnections: guard.blocked.length,
  })}\n`,
);
