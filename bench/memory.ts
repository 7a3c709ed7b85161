/**
 * Section 6, run as child processes by run.ts, so the resident set measured is the webhook's alone: the memory of a
 * process whose key cache holds N distinct devices' imported keys.
 *
 *   node dist/bench/memory.js keygen <keys> <file>   makes N P-256 key pairs; writes one line per device: the public
 *                                                    key (SPKI DER, base64) and, for a sample, a token it signed
 *   node --expose-gc dist/bench/memory.js measure <file> [<serve seconds>]
 *
 * The keys are made, and the sample's tokens signed, in another process because production never makes keys or signs:
 * freed private keys would leave the measuring process's allocator fragmented and its RSS higher than a webhook's. The measuring process streams the
 * file into the webhook's own cache (`createWebhook(config, { keyStore })`, an in-memory KeyStore whose values go
 * through the production parser, as the folder or Key Vault store's do), through `webhook.keyCache`; then admits the
 * sample devices through `webhook.handle`, to show the entries are the ones the handler uses (no new store reads).
 * Measured twice: right after the fill (and a forced GC), and while serving: the sample devices admitted again and
 * again at a steady `SERVING_RATE` for `<serve seconds>` (0: not served), the resident set read at the end. The
 * second is what an instance holding those keys keeps while it works: V8's memory reducer, which gives back the young
 * generation and the pooled pages a fill grew once a process goes idle, does not run while decisions keep coming
 * (measured on Node 22: 166 MB after a fill, 172-178 MB after a minute at 200 decisions a second, 89 MB idle).
 * The process also reports the memory limit it runs under (`process.constrainedMemory()`, its cgroup's) and the heap
 * limit V8 chose from it: V8 sizes its young generation from the memory it sees, so run.ts runs this process once in
 * a cgroup of the function app's instance memory as well as on the host's.
 */
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import { createReadStream, createWriteStream, mkdtempSync } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
import { join } from 'node:path';
import { createWebhook } from '../functions/app/compose.js';
import { loadConfig } from '../functions/config.js';
import { parseKeyMaterial } from '../functions/keys/parse.js';
import { NO_TAGS, type KeyLookup, type KeyStore } from '../functions/keys/types.js';
// devices.js alone, not ./support.js: that also loads the Key Vault stand-in and its certificate library, which a
// webhook never holds; the process measured should hold the webhook and its cache, and little else.
import { allocationRequest } from '../test/support/devices.js';

const [mode, countOrFile, fileArg] = process.argv.slice(2);
// In measure mode the third argument is how long to serve after the fill.
const serveSeconds = mode === 'measure' && fileArg !== undefined ? Number(fileArg) : 0;
if (!(serveSeconds >= 0)) throw new TypeError('<serve seconds> must be a number >= 0');
// Decisions a second while serving: a steady stream, far below an instance's peak (thousands a second), so the
// allocation rate is a working instance's and not a load test's.
const SERVING_RATE = 200;
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
// The requests served later, made now as new strings: a token read from the file is a slice of the reader's 64 KB
// chunk and would keep it alive (1,000 of them held 12 MB).
const servedBodies = [...sampleTokens].map(([id, token]) => JSON.stringify(allocationRequest({ registrationId: id, token })));
sampleTokens.clear();
await settle();
const after = snapshot();
const newSpaceSizeMB = () => (getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0) / MB;
const newSpaceMB = newSpaceSizeMB();

/**
 * Admits the sample devices round robin at `SERVING_RATE` for `seconds` through `webhook.handle`, as DPS's webhook
 * calls would (their tokens stay valid: keygen signed them for ten minutes), then reads the resident set. Each
 * answer is counted: a refusal would mean the figure is not a serving webhook's.
 */
async function serve(seconds: number, bodies: readonly string[]): Promise<{ decisions: number; refused: number; rssMB: number; newSpaceMB: number }> {
  const start = performance.now();
  let decisions = 0;
  let refused = 0;
  while (performance.now() - start < seconds * 1000) {
    const due = Math.floor(((performance.now() - start) / 1000) * SERVING_RATE);
    for (; decisions < due; decisions++) {
      const answer = await webhook.handle({ body: bodies[decisions % bodies.length]!, contentType: 'application/json' });
      if (answer.status !== 200) refused += 1;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { decisions, refused, rssMB: snapshot().rssMB, newSpaceMB: newSpaceSizeMB() };
}
const serving = await serve(serveSeconds, servedBodies);
const constrained = process.constrainedMemory();

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
    servingSeconds: serveSeconds,
    servingRate: SERVING_RATE,
    servingDecisions: serving.decisions,
    servingRefused: serving.refused,
    servingRssMB: serving.rssMB,
    servingNewSpaceMB: serving.newSpaceMB,
    // Null when no limit applies (Node gives 0, or cgroup v1's near-2^63 "no limit"): V8 sized its heap from the host's memory.
    constrainedMemoryMB: constrained > 0 && constrained < Number.MAX_SAFE_INTEGER ? constrained / MB : null,
    heapSizeLimitMB: getHeapStatistics().heap_size_limit / MB,
    // The options Node started with from the environment (the deployed app's NODE_OPTIONS in the instance run).
    nodeOptions: process.env.NODE_OPTIONS ?? null,
  })}\n`,
);
