/**
 * Property-based fuzzing (issue 6, part 3) with fast-check, seeded and bounded. Properties:
 *  - the request parser only ever returns or throws a coded WebhookError (400/413);
 *  - the whole handler never throws and never answers 5xx;
 *  - it answers 200 only for a valid token of the registering device (an independent oracle says which).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createWebhook, type Webhook } from '../../functions/app/compose.js';
import { loadConfig } from '../../functions/config.js';
import { REASONS, WebhookError } from '../../functions/core/reasons.js';
import { parseAllocationRequest } from '../../functions/core/request.js';
import type { AssignedBody, WebhookAnswer } from '../../functions/core/webhook.js';
import { allocationRequest, deviceToken, HUBS, ID_SCOPE, keysDir, makeDevice, type TestDevice } from '../support/devices.js';
import { keyObject, LeakWatch, segments, signRaw } from '../support/security.js';
import type { KeyObject } from 'node:crypto';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const now = Math.floor(NOW / 1000);
const SKEW = 60;
const MAX_LIFETIME = 3600;
const SEED = 0x5ec0de;

const watch = new LeakWatch();
let alice: TestDevice;
let aliceKey: KeyObject;
let webhook: Webhook;
let validToken: string;
let validRequest: Record<string, unknown>;

beforeAll(async () => {
  alice = await makeDevice('sensor-0042');
  aliceKey = await keyObject(alice.privateKey);
  webhook = await createWebhook(loadConfig({ DEVICE_KEYS_DIR: await keysDir([alice]), DPS_ID_SCOPE: ID_SCOPE }), { now: () => NOW });
  validToken = await deviceToken(alice, now);
  validRequest = allocationRequest({ registrationId: alice.id, token: validToken });
  watch.token('the valid token', validToken);
  watch.pem('alice public key', alice.publicPem);
});
afterAll(() => webhook?.close());

const STATUSES = new Set<number>(Object.values(REASONS).map((r) => r.status));

async function handle(body: string, contentType: string | undefined = 'application/json'): Promise<WebhookAnswer> {
  const answer = await webhook.handle({ body, ...(contentType !== undefined && { contentType }) });
  watch.saw('answer', { status: answer.status, body: answer.body, log: answer.log });
  expect(answer.status).toBeLessThan(429); // no store can fail here: a 5xx would be a bug
  expect(STATUSES.has(answer.status)).toBe(true);
  expect(answer.log.status).toBe(answer.status);
  return answer;
}

const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

describe('parseAllocationRequest', () => {
  const parsesOrRefuses = (body: string, contentType: string | undefined) => {
    try {
      const request = parseAllocationRequest(body, contentType);
      expect(typeof request.registrationId).toBe('string');
      expect(request.linkedHubs.length).toBeGreaterThan(0);
    } catch (error) {
      expect(error).toBeInstanceOf(WebhookError);
      expect([400, 413]).toContain(REASONS[(error as WebhookError).code].status);
    }
  };

  test('arbitrary JSON values: parsed or refused with a coded 400', () => {
    fc.assert(fc.property(fc.jsonValue(), (value) => parsesOrRefuses(JSON.stringify(value) ?? 'null', 'application/json')), { seed: SEED, numRuns: 1000 });
  });

  test('arbitrary strings and content types: parsed or refused with a coded 400', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), fc.option(fc.string({ maxLength: 40 }), { nil: undefined }), parsesOrRefuses),
      { seed: SEED, numRuns: 1000 },
    );
  });

  test('JSON objects shaped like an AllocationRequest with arbitrary leaves: parsed or refused with a coded 400', () => {
    const leaf = fc.oneof(fc.jsonValue(), fc.constantFrom(...HUBS, 'sensor-0042', '__proto__', '', 'a/b'));
    const shaped = fc.record(
      {
        individualEnrollment: fc.oneof(leaf, fc.record({ registrationId: leaf }, { requiredKeys: [] })),
        enrollmentGroup: fc.oneof(leaf, fc.record({ enrollmentGroupId: leaf }, { requiredKeys: [] })),
        deviceRuntimeContext: fc.oneof(leaf, fc.record({ registrationId: leaf, currentIotHubHostName: leaf, payload: fc.oneof(leaf, fc.record({ jwt: leaf })) }, { requiredKeys: [] })),
        linkedHubs: fc.oneof(leaf, fc.array(leaf, { maxLength: 70 })),
      },
      { requiredKeys: [] },
    );
    fc.assert(fc.property(shaped, (value) => parsesOrRefuses(JSON.stringify(value), 'application/json')), { seed: SEED, numRuns: 1000 });
  });
});

describe('webhook.handle', () => {
  test('arbitrary JSON values: never 200, never 5xx, never a throw', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), async (value) => {
        expect((await handle(JSON.stringify(value) ?? 'null')).status).not.toBe(200);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  test('arbitrary strings and content types: never 200, never 5xx, never a throw', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 500 }), fc.option(fc.string({ maxLength: 40 }), { nil: undefined }), async (body, contentType) => {
        expect((await handle(body, contentType)).status).not.toBe(200);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  test('mutated valid requests: 200 only for this device, with its token, and a hub DPS linked', async () => {
    type Path = Array<string | number>;
    const pathsOf = (value: unknown, path: Path = [], out: Path[] = []): Path[] => {
      out.push(path);
      if (Array.isArray(value)) value.forEach((v, i) => pathsOf(v, [...path, i], out));
      else if (typeof value === 'object' && value !== null) for (const [k, v] of Object.entries(value)) pathsOf(v, [...path, k], out);
      return out;
    };
    const mutation = fc.record({
      op: fc.constantFrom('set', 'delete', 'add', 'case'),
      at: fc.nat(),
      key: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'prototype', 'jwt', 'registrationId', 'enrollmentGroup', 'linkedHubs', 'payload')),
      value: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constantFrom(...HUBS, 'SENSOR-0042', 'sensor-0043', '\u212Aensor', 'evil.example.com', [], {})),
    });
    let admitted = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 4 }), async (mutations) => {
        const request = structuredClone(validRequest) as Record<string, unknown>;
        for (const m of mutations) {
          const paths = pathsOf(request).filter((p) => p.length > 0);
          const path = paths[m.at % paths.length]!;
          const parent = path.slice(0, -1).reduce<unknown>((node, k) => (node as Record<string | number, unknown>)[k], request) as Record<string | number, unknown>;
          const last = path.at(-1)!;
          if (m.op === 'set') parent[last] = m.value;
          else if (m.op === 'delete') Array.isArray(parent) ? parent.splice(last as number, 1) : delete parent[last];
          else if (m.op === 'add' && !Array.isArray(parent)) Object.defineProperty(parent, m.key, { value: m.value, enumerable: true, configurable: true, writable: true });
          else if (m.op === 'case' && typeof parent[last] === 'string') parent[last] = (parent[last] as string).toUpperCase();
        }
        const answer = await handle(JSON.stringify(request));
        if (answer.status === 200) {
          admitted += 1;
          const context = request.deviceRuntimeContext as { registrationId: string; payload: { jwt: string } };
          expect(asciiLower(context.registrationId)).toBe(alice.id);
          expect(context.payload.jwt).toBe(validToken);
          expect(request.linkedHubs as string[]).toContain((answer.body as AssignedBody).iotHubHostName);
        }
      }),
      { seed: SEED, numRuns: 600 },
    );
    // The property is not vacuous: some mutations leave a valid request (an ignored field, an upper-cased id).
    expect(admitted).toBeGreaterThan(50);
  });

  test('mutated valid tokens: 200 only when header and claims are byte-identical and the signature decodes the same', async () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ %\u0000\u212A';
    const edit = fc.record({
      op: fc.constantFrom('replace', 'delete', 'insert', 'truncate', 'swap', 'duplicate'),
      at: fc.nat(),
      char: fc.constantFrom(...alphabet),
    });
    const original = segments(validToken);
    const originalSignature = Buffer.from(original[2], 'base64url');
    let admitted = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(edit, { minLength: 1, maxLength: 3 }), async (edits) => {
        let token = validToken;
        for (const e of edits) {
          const i = e.at % (token.length + 1);
          if (e.op === 'replace') token = token.slice(0, i) + e.char + token.slice(i + 1);
          else if (e.op === 'delete') token = token.slice(0, i) + token.slice(i + 1);
          else if (e.op === 'insert') token = token.slice(0, i) + e.char + token.slice(i);
          else if (e.op === 'truncate') token = token.slice(0, i);
          else if (e.op === 'swap') {
            const s = token.split('.');
            const a = e.at % s.length;
            const b = (e.at >> 3) % s.length;
            [s[a], s[b]] = [s[b]!, s[a]!];
            token = s.join('.');
          } else if (e.op === 'duplicate') {
            const s = token.split('.');
            s.splice(e.at % (s.length + 1), 0, s[e.at % s.length]!);
            token = s.join('.');
          }
        }
        const answer = await handle(JSON.stringify(allocationRequest({ registrationId: alice.id, token })));
        if (answer.status === 200) {
          admitted += 1;
          const [h, p, s] = segments(token);
          expect(`${h}.${p}`).toBe(`${original[0]}.${original[1]}`);
          expect(/^[A-Za-z0-9_-]+$/.test(s)).toBe(true);
          expect(Buffer.from(s, 'base64url').equals(originalSignature)).toBe(true);
        }
      }),
      { seed: SEED, numRuns: 1000 },
    );
    expect(admitted).toBeGreaterThan(0); // e.g. a character replaced by itself
  });

  test("tokens validly signed by the device over arbitrary claims: 200 exactly when an independent reading of the policy says so", async () => {
    // Mostly good values, so that admitting is common enough to be tested too; the rest wrong in type or near a bound.
    const around = (t: number) => fc.oneof(
      { arbitrary: fc.integer({ min: t - 4000, max: t + 4000 }), weight: 2 },
      { arbitrary: fc.constantFrom(t - SKEW, t - SKEW + 1, t + SKEW, t + SKEW + 1), weight: 2 },
      { arbitrary: fc.double({ min: t - 100, max: t + 100, noNaN: true }), weight: 1 },
    );
    const wrong = fc.oneof(fc.string({ maxLength: 8 }), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 2 }), fc.constant({}));
    const mostly = <T>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<unknown>) => fc.oneof({ arbitrary: good, weight: 6 }, { arbitrary: bad, weight: 1 });
    const id = mostly(fc.constantFrom('sensor-0042', 'SENSOR-0042', 'Sensor-0042'), fc.oneof(fc.constantFrom('sensor-0043', '\u017Fensor-0042', '\u212A', 'sensor-0042\u0000', ''), wrong));
    const scope = mostly(fc.constantFrom(ID_SCOPE, [ID_SCOPE], ['x', ID_SCOPE]), fc.oneof(fc.constantFrom(ID_SCOPE.toLowerCase(), '0ne00OTHER0', ['x'], [ID_SCOPE, 1]), wrong));
    const opt = <T>(a: fc.Arbitrary<T>, freq: number) => fc.option(a, { nil: undefined, freq });
    const claimsArb = fc.record({
      iat: opt(mostly(fc.oneof(fc.constant(now), around(now)), wrong), 12),
      exp: opt(mostly(fc.oneof(fc.constant(now + 300), around(now + 300), around(now + MAX_LIFETIME), around(now)), wrong), 12),
      nbf: opt(mostly(around(now - 100), wrong), 2),
      sub: opt(id, 3),
      registration_id: opt(id, 3),
      aud: opt(scope, 3),
      id_scope: opt(scope, 3),
      jti: opt(mostly(fc.string({ minLength: 1, maxLength: 8 }), fc.oneof(fc.constant(''), fc.constant('j'.repeat(257)), wrong)), 3),
    });

    const expected = (c: Record<string, unknown>): boolean => {
      const num = (v: unknown): v is number => typeof v === 'number';
      if (!num(c.iat) || !num(c.exp)) return false;
      if (c.nbf !== undefined && (!num(c.nbf) || c.nbf > now + SKEW)) return false;
      if (c.exp <= now - SKEW || c.iat > now + SKEW || c.exp - c.iat > MAX_LIFETIME) return false;
      const ids = [c.sub, c.registration_id].filter((v) => v !== undefined);
      if (ids.length === 0 || !ids.every((v) => typeof v === 'string' && asciiLower(v) === alice.id)) return false;
      const aud = c.aud;
      if (aud !== undefined && !(typeof aud === 'string' || (Array.isArray(aud) && aud.every((a) => typeof a === 'string')))) return false;
      if (c.id_scope !== undefined && typeof c.id_scope !== 'string') return false;
      if (aud === undefined && c.id_scope === undefined) return false;
      if (aud !== undefined && !(typeof aud === 'string' ? aud === ID_SCOPE : (aud as string[]).includes(ID_SCOPE))) return false;
      if (c.id_scope !== undefined && c.id_scope !== ID_SCOPE) return false;
      if (c.jti !== undefined && (typeof c.jti !== 'string' || c.jti.length === 0 || c.jti.length > 256)) return false;
      return true;
    };

    let admitted = 0;
    await fc.assert(
      fc.asyncProperty(claimsArb, async (generated) => {
        const claims = Object.fromEntries(Object.entries(generated).filter(([, v]) => v !== undefined));
        const token = signRaw(aliceKey, { alg: 'ES256', typ: 'JWT' }, claims);
        const answer = await handle(JSON.stringify(allocationRequest({ registrationId: alice.id, token })));
        expect(answer.status === 200, JSON.stringify({ claims, answer: answer.body })).toBe(expected(claims));
        if (answer.status === 200) admitted += 1;
        else expect(answer.status).toBe(403);
      }),
      { seed: SEED, numRuns: 800 },
    );
    expect(admitted).toBeGreaterThan(20);
  });
});

test('no fuzzed answer or log line carries the valid token, its segments or the key', () => {
  expect(watch.count).toBeGreaterThan(3000);
  expect(watch.leaks()).toEqual([]);
});
