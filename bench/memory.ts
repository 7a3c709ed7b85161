/**
 * Section 6, run as its own process by run.ts (with --expose-gc) so its resident set is the webhook's alone: the
 * memory of a process whose key cache holds N distinct devices' imported keys.
 *
 * The cache is the webhook's own (`createWebhook(config, { keyStore })`): an in-memory KeyStore makes a fresh P-256
 * key per device name and imports it with the production parser, as the folder or Key Vault store would. The cache
 * is filled through `webhook.keyCache`, then a sample of devices is admitted through `webhook.handle` to show the
 * entries are the ones the handler uses (no new store reads).
 *
 * Usage: node --expose-gc dist/bench/memory.js <keys>
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { tmpdir } from 'node:os';
import { createWebhook } from '../functions/app/compose.js';
import { loadConfig } from '../functions/config.js';
import { parseKeyMaterial } from '../functions/keys/parse.js';
import type { KeyLookup, KeyStore } from '../functions/keys/types.js';
import { allocationRequest, signToken } from './support.js';

const keyCount = Number(process.argv[2] ?? 100_000);
const SAMPLE = Math.min(1000, keyCount);
const gc = (globalThis as { gc?: () => void }).gc;
const settle = async () => {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
};
const MB = 1024 * 1024;
const snapshot = () => {
  const m = process.memoryUsage();
  return { rssMB: m.rss / MB, heapUsedMB: m.heapUsed / MB, externalMB: m.external / MB };
};

// Private keys of a spread-out sample of devices, to sign their tokens; all others are dropped once imported.
const signers = new Map<string, KeyObject>();
const sampleEvery = Math.max(1, Math.floor(keyCount / SAMPLE));
const idOf = (i: number) => `mem-device-${i}`;
const names = (lookup: KeyLookup) => [`device:${lookup.registrationId.toLowerCase()}`];
const store: KeyStore = {
  async read(name) {
    const id = name.slice('device:'.length);
    const i = Number(id.slice('mem-device-'.length));
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    if (i % sampleEvery === 0) signers.set(id, privateKey);
    const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
    return { keys: await parseKeyMaterial(pem, ['ES256'], `${id}.pem`), enabled: true, tags: {}, origin: `${id}.pem` };
  },
};

const webhook = await createWebhook(loadConfig({ DEVICE_KEYS_DIR: tmpdir(), KEY_CACHE_MAX_ENTRIES: String(Math.max(200_000, keyCount)) }), {
  keyStore: { store, names },
});
await settle();
const before = snapshot();

const BATCH = 256;
for (let i = 0; i < keyCount; i += BATCH) {
  const batch = [];
  for (let j = i; j < Math.min(keyCount, i + BATCH); j++) batch.push(webhook.keyCache.get(names({ registrationId: idOf(j) })[0]!));
  await Promise.all(batch);
}

// The handler uses these very entries: admitting the sample must not read the store again.
const readsAfterFill = webhook.keyCache.stats.reads;
const nowSeconds = Math.floor(Date.now() / 1000);
let admitted = 0;
for (const [id, privateKey] of signers) {
  const { subtle } = globalThis.crypto;
  const signingKey = await subtle.importKey('pkcs8', privateKey.export({ type: 'pkcs8', format: 'der' }), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  const token = await signToken(signingKey, { sub: id, registration_id: id, iat: nowSeconds, exp: nowSeconds + 300 });
  const answer = await webhook.handle({ body: JSON.stringify(allocationRequest({ registrationId: id, token })), contentType: 'application/json' });
  if (answer.status === 200) admitted += 1;
}
const sampled = signers.size;
signers.clear();
await settle();
const after = snapshot();

process.stdout.write(
  `${JSON.stringify({
    keys: keyCount,
    cachedEntries: webhook.keyCache.stats.size(),
    storeReads: webhook.keyCache.stats.reads,
    extraReadsWhenAdmitting: webhook.keyCache.stats.reads - readsAfterFill,
    sampleAdmitted: admitted,
    sampleSize: sampled,
    gcExposed: gc !== undefined,
    baselineRssMB: before.rssMB,
    rssMB: after.rssMB,
    heapUsedMB: after.heapUsedMB,
    externalMB: after.externalMB,
    bytesPerKey: ((after.rssMB - before.rssMB) * MB) / keyCount,
  })}\n`,
);
