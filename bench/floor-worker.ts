/**
 * One thread of the floor: raw ES256 verifications with node:crypto, the least any verifier must do per
 * registration. Each thread holds its own keys and realistic JWS signing inputs, waits for "go", verifies for the
 * given time, and reports how many it did.
 */
import { generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';

const { keys: keyCount, durationMs } = workerData as { keys: number; durationMs: number };
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

const cases: Array<{ key: KeyObject; data: Buffer; sig: Buffer }> = [];
const now = Math.floor(Date.now() / 1000);
for (let i = 0; i < keyCount; i++) {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const id = `floor-device-${i}`;
  const data = Buffer.from(`${b64({ alg: 'ES256', typ: 'JWT' })}.${b64({ registration_id: id, sub: id, iat: now, exp: now + 300 })}`);
  cases.push({ key: publicKey, data, sig: sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' }) });
}

parentPort!.once('message', () => {
  const started = performance.now();
  const end = started + durationMs;
  let count = 0;
  let failed = 0;
  // Check the clock every 64 verifications: a verification is ~0.1 ms, the clock read is not free.
  while (performance.now() < end) {
    for (let j = 0; j < 64; j++) {
      const c = cases[(count + j) % cases.length]!;
      if (!verify('sha256', c.data, { key: c.key, dsaEncoding: 'ieee-p1363' }, c.sig)) failed += 1;
    }
    count += 64;
  }
  parentPort!.postMessage({ count, failed, seconds: (performance.now() - started) / 1000 });
});
parentPort!.postMessage('ready');
