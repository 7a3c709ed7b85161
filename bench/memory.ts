/**
 * Section 6, run as child processes by run.ts, so the resident set measured is the webhook's alone: the memory of a
 * process whose key cache holds N distinct devices' imported keys.
 *
 *   node dist/bench/memory.js keygen <keys> <file>   makes N P-256 key pairs; writes one line per device: the public
 *                                                    key (SPKI DER, base64) and, for a sample, a token it signed
 *   node --expose-gc dist/bench/memory.js measure <file> [<rest seconds>]
 *
 * The keys are made, and the sample's tokens signed, in another process because production never makes keys or signs:
 * freed private keys would leave the measuring process's allocator fragmented and its RSS higher than a webhook's. The measuring process streams the
 * file into the webhook's own cache (`createWebhook(config, { keyStore })`, an in-memory KeyStore whose values go
 * through the production parser, as the folder or Key Vault store's do), through `webhook.keyCache`; then admits the
 * sample devices through `webhook.handle`, to show the entries are the ones the handler uses (no new store reads).
 * Measured twice: right after the fill (and a forced GC), and at rest, once the process has sat idle long enough for
 * V8's memory reducer to give back the young generation and pooled pages the fill grew (up to `<rest seconds>`, 0:
 * not waited for). A fill at the bench's speed (about 10,000 reads a second) is a hundred times what the Key Vault
 * read rate lets an instance do (KEY_STORE_MAX_READS_PER_SECOND, 100), so the first figure is a transient peak and
 * the second what an instance holding those keys keeps.
 */
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import { createReadStream, createWriteStream, mkdtempSync } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { getHeapSpaceStatistics } from 'node:v8';
import { join } from 'node:path';
import { createWebhook } from '../functions/app/compose.js';
import { loadConfig } from '../functions/config.js';
import { parseKeyMaterial } from '../functions/keys/parse.js';
import { NO_TAGS, type KeyLookup, type KeyStore } from '../functions/keys/types.js';
// devices.js alone, not ./support.js: that also loads the Key Vault stand-in and its certificate library, which a
// webhook never holds; the process measured should hold the webhook and its cache, and little else.
import { allocationRequest } from '../test/support/devices.js';

const [mode, countOrFile, fileArg] = process.argv.slice(2);
// In measure mode the third argument is how long to wait for the process to come to rest.
const restSeconds = mode === 'measure' && fileArg !== undefined ? Number(fileArg) : 0;
if (!(restSeconds >= 0)) throw new TypeError('<rest seconds> must be a number >= 0');
const SAMPLE = 1000;
const idOf = (i: number) => `mem-device-${i}`;
const nowSeconds = Math.floor(Date.now() / 1000);

if (mode === 'keygen') {
  const keyCount = Number(countOrFile);
  const sampleEvery = Math.max(1, Math.floor(keyCount / SAMPLE));
  const out = createWriteStream(fileArg!);
  for (let i = 0; i < keyCount; i++) {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spki = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    const token = i % sampleEvery === 0 ? await new SignJWT({ sub: idOf(i), registration_id: idOf(i), iat: nowSeconds, exp: nowSeconds + 600 }).setProtectedHeader({ alg: 'ES256', typ: 'JWT' }).sign(privateKey) : '';
    if (!out.write(`${spki} ${token}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  process.stdout.write(`${JSON.stringify({ keys: keyCount })}\n`);
  process.exit(0);
}
if (mode !== 'measure' || countOrFile === undefined) throw new TypeError('usage: memory.js keygen <keys> <file> | memory.js measure <file>');

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

// What the store holds, by device: the PEM it would read from a file or a secret. Filled line by line below and
// emptied as the cache takes each key, so the store itself holds (almost) nothing at measuring time.
const stored = new Map<string, string>();
const names = (lookup: KeyLookup) => [`device:${lookup.registrationId.toLowerCase()}`];
const store: KeyStore = {
  async read(name) {
    const id = name.slice('device:'.length);
    const pem = stored.get(id);
    stored.delete(id);
    if (pem === undefined) return undefined;
    return { keys: await parseKeyMaterial(pem, ['ES256'], `${id}.pem`), enabled: true, tags: NO_TAGS, origin: `${id}.pem` };
  },
};
const sampleTokens = new Map<string, string>();

const webhook = await createWebhook(loadConfig({ DEVICE_KEYS_DIR: mkdtempSync(join(tmpdir(), 'bench-memory-')), DPS_ID_SCOPE_CHECK: 'off', KEY_CACHE_MAX_ENTRIES: '10000000' }), {
  keyStore: { store, names },
});
await settle();
const before = snapshot();

// Stream the file in, a batch at a time.
let keyCount = 0;
let batch: Promise<unknown>[] = [];
for await (const line of createInterface({ input: createReadStream(countOrFile), crlfDelay: Infinity })) {
  if (line === '') continue;
  const [spki, token] = line.split(' ');
  const id = idOf(keyCount++);
  stored.set(id, `-----BEGIN PUBLIC KEY-----\n${spki!.match(/.{1,64}/g)!.join('\n')}\n-----END PUBLIC KEY-----\n`);
  if (token) sampleTokens.set(id, token);
  batch.push(webhook.keyCache.get(names({ registrationId: id })[0]!));
  if (batch.length === 256) {
    await Promise.all(batch);
    batch = [];
  }
}
await Promise.all(batch);

// The handler uses these very entries: admitting the sample must not read the store again.
const readsAfterFill = webhook.keyCache.stats.reads;
let admitted = 0;
for (const [id, token] of sampleTokens) {
  const answer = await webhook.handle({ body: JSON.stringify(allocationRequest({ registrationId: id, token })), contentType: 'application/json' });
  if (answer.status === 200) admitted += 1;
}
const sampled = sampleTokens.size;
sampleTokens.clear();
await settle();
const after = snapshot();
const newSpaceMB = (getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0) / MB;

/**
 * Waits, idle, until V8 has shrunk the heap it committed for the fill (its memory reducer runs on its own some
 * seconds after the allocation rate drops; nothing here forces it): the resident set then, and how long it took.
 * Null when it did not happen within `seconds`.
 */
async function atRest(seconds: number): Promise<{ rssMB: number; heapTotalMB: number; afterSeconds: number } | null> {
  const start = performance.now();
  const committed = process.memoryUsage().heapTotal;
  while (performance.now() - start < seconds * 1000) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const m = process.memoryUsage();
    // A quarter of the committed heap given back: V8 has shrunk what the fill grew (here: 55 MB to 22 MB at once).
    if (m.heapTotal < committed * 0.75) {
      // The reducer may run more than one GC: give it a moment before reading the resident set.
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const settled = process.memoryUsage();
      return { rssMB: settled.rss / MB, heapTotalMB: settled.heapTotal / MB, afterSeconds: (performance.now() - start) / 1000 };
    }
  }
  return null;
}
const rest = restSeconds > 0 ? await atRest(restSeconds) : null;

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
    // What the cache itself retains (V8 heap after GC), apart from what the process keeps committed around it: the
    // young generation the fill grew (V8 keeps it), pooled pages, the allocator's free lists.
    heapBytesPerKey: ((after.heapUsedMB - before.heapUsedMB) * MB) / keyCount,
    newSpaceMB,
    restWaitSeconds: restSeconds,
    restRssMB: rest?.rssMB ?? null,
    restHeapTotalMB: rest?.heapTotalMB ?? null,
    restAfterSeconds: rest?.afterSeconds ?? null,
  })}\n`,
);
