/**
 * The Key Vault stand-in's listing and writing (issue 16, item 6), through the real SecretClient: it refuses what
 * the vault refuses (writes over the per-vault limit with 429, bad names, too many or too long tags, a page larger
 * than 25), pages its listings with nextLink, and keeps every version a write makes.
 */
import { ManagedIdentityCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startKeyVaultStandin, type KeyVaultStandin } from '../support/keyvault-standin.js';
import { startManagedIdentityStandin, useManagedIdentityEnv, type ManagedIdentityStandin } from '../support/managed-identity-standin.js';
import { guardLoopback } from '../support/security.js';

let guard: ReturnType<typeof guardLoopback>;
let mi: ManagedIdentityStandin;
let restoreEnv: () => void;
let vault: KeyVaultStandin;
let client: SecretClient;

beforeAll(async () => {
  guard = guardLoopback();
  mi = await startManagedIdentityStandin();
  restoreEnv = useManagedIdentityEnv(mi);
  vault = await startKeyVaultStandin({ acceptsToken: mi.isIssuedToken, writeLimit: { writes: 5, windowMs: 1_000 } });
  client = new SecretClient(vault.url, new ManagedIdentityCredential(), { disableChallengeResourceVerification: true, retryOptions: { maxRetries: 0 } });
});
afterAll(async () => {
  await vault?.stop();
  await mi?.stop();
  restoreEnv?.();
  guard?.restore();
});

const statusOf = (promise: Promise<unknown>) => promise.then(() => 200, (e: { statusCode?: number }) => e.statusCode ?? -1);

describe('the per-vault write limit', () => {
  test('refuses writes over the limit with 429, stores none of them, and accepts writes again once the window has passed', async () => {
    vault.resetWriteCounts();
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push(await statusOf(client.setSecret(`limit-${i}`, 'v')));
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    expect(vault.writeCounts()).toMatchObject({ writes: 5, throttled: 3, peakWindowWrites: 5 });
    expect(vault.versions('limit-5')).toEqual([]);
    await new Promise((r) => setTimeout(r, 1_050));
    expect(await statusOf(client.setSecret('limit-5', 'v'))).toBe(200);
    vault.setWriteLimit(undefined);
  });

  test('the 429 carries the vault error body and no Retry-After promise', async () => {
    vault.setWriteLimit({ writes: 0, windowMs: 1_000 });
    const error = await client.setSecret('limit-x', 'v').then(
      () => expect.fail('the write should have been throttled'),
      (e: unknown) => e as { statusCode: number; code?: string; response?: { headers: { get(n: string): string | undefined } } },
    );
    expect(error).toMatchObject({ statusCode: 429, code: 'Throttled' });
    expect(error.response?.headers.get('retry-after')).toBeUndefined();
    vault.setWriteLimit(undefined);
  });
});

describe('set secret refuses what the vault refuses (400 BadParameter), storing nothing', () => {
  test.each([
    ['a name outside 0-9a-zA-Z-', () => client.setSecret('bad_name', 'v')],
    ['a name over 127 characters', () => client.setSecret('n'.repeat(128), 'v')],
    ['16 tags', () => client.setSecret('tags-16', 'v', { tags: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`t${i}`, 'x'])) })],
    ['a tag value over 256 characters', () => client.setSecret('tag-long', 'v', { tags: { t: 'x'.repeat(257) } })],
    ['a value over 25 KB', () => client.setSecret('too-big', 'x'.repeat(25 * 1024 + 1))],
    ['a content type over 255 characters', () => client.setSecret('ct-long', 'v', { contentType: 'x'.repeat(256) })],
  ])('%s', async (_, write) => {
    const before = vault.writeCounts().writes;
    const error = await write().catch((e: unknown) => e as { statusCode: number; code?: string });
    expect(error).toMatchObject({ statusCode: 400, code: 'BadParameter' });
    expect(vault.writeCounts().writes).toBe(before);
  });

  test('15 tags of 256 characters are accepted', async () => {
    const tags = Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`${i}`.padEnd(256, 'k'), 'v'.repeat(256)]));
    await client.setSecret('tags-15', 'v', { tags });
    expect(Object.keys(vault.versions('tags-15')[0]!.tags)).toHaveLength(15);
  });
});

describe('versions and listing', () => {
  test('every set makes a new version, even with the same value; disabled and tags are kept; reads see the newest', async () => {
    await client.setSecret('versioned', 'one', { tags: { a: '1' } });
    await client.setSecret('versioned', 'one', { enabled: false, contentType: 'application/x-pem-file' });
    const versions: string[] = [];
    for await (const p of client.listPropertiesOfSecretVersions('versioned')) versions.push(`${p.version}:${p.enabled}`);
    expect(versions).toHaveLength(2);
    expect(vault.versions('versioned').map((v) => [v.enabled, v.tags, v.contentType])).toEqual([
      [true, { a: '1' }, undefined],
      [false, {}, 'application/x-pem-file'],
    ]);
    // The newest is disabled: a read is refused, as the vault does.
    await expect(client.getSecret('versioned')).rejects.toMatchObject({ statusCode: 403 });
  });

  test('lists every secret once, 25 to a page by default, disabled ones included, names as written', async () => {
    for (let i = 0; i < 60; i++) vault.setSecret(`page-${String(i).padStart(2, '0')}`, 'v', { enabled: i % 2 === 0, tags: { i: String(i) } });
    vault.resetWriteCounts();
    const seen = new Map<string, boolean>();
    let pages = 0;
    for await (const page of client.listPropertiesOfSecrets().byPage()) {
      pages += 1;
      expect(page.length).toBeLessThanOrEqual(25);
      for (const p of page) {
        expect(seen.has(p.name)).toBe(false);
        seen.set(p.name, p.enabled !== false);
      }
    }
    expect(pages).toBe(vault.writeCounts().listCalls);
    expect(seen.size).toBe(vault.secretNames().length);
    expect(seen.get('page-01')).toBe(false);
    expect(seen.get('page-02')).toBe(true);
    expect(pages).toBe(Math.ceil(seen.size / 25));
  });

  test('a smaller page size is honoured through nextLink; one over 25 is refused', async () => {
    let pages = 0;
    for await (const page of client.listPropertiesOfSecrets().byPage({ maxPageSize: 7 })) {
      pages += 1;
      expect(page.length).toBeLessThanOrEqual(7);
    }
    expect(pages).toBe(Math.ceil(vault.secretNames().length / 7));
    const error = await client.listPropertiesOfSecrets().byPage({ maxPageSize: 26 }).next().catch((e: unknown) => e);
    expect(error).toMatchObject({ statusCode: 400 });
  });

  test('injected 5xx answers: the next writes fail, with or without the version stored', async () => {
    vault.failWrites({ status: 503, count: 1 });
    expect(await statusOf(client.setSecret('fault-a', 'v'))).toBe(503);
    expect(vault.versions('fault-a')).toEqual([]);
    vault.failWrites({ status: 500, count: 1, afterWrites: 1, stored: true });
    expect(await statusOf(client.setSecret('fault-b', 'v'))).toBe(200);
    expect(await statusOf(client.setSecret('fault-c', 'v'))).toBe(500);
    expect(vault.versions('fault-c')).toHaveLength(1);
    expect(await statusOf(client.setSecret('fault-d', 'v'))).toBe(200);
  });

  test('a write without a token gets the challenge and counts as nothing', async () => {
    const before = vault.writeCounts().writes;
    const res = await fetch(`${vault.url}/secrets/no-token?api-version=2025-07-01`, { method: 'PUT', body: JSON.stringify({ value: 'v' }), headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer authorization=/);
    expect(vault.writeCounts().writes).toBe(before);
    expect(guard.blocked).toEqual([]);
  });
});
