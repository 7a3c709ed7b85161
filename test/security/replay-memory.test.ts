/**
 * The in-memory replay store on its own (issue 13 item 2): bounded in bytes with a cost per use that does not depend
 * on the jti, never forgetting a use before its token stops being acceptable, and freeing what has expired as time
 * passes (bucket by bucket, without walking the whole map).
 */
import { describe, expect, test } from 'vitest';
import type { TokenUse } from '../../functions/core/ports.js';
import { WebhookError } from '../../functions/core/reasons.js';
import { createMemoryReplayStore, deviceBytes, ENTRY_BYTES } from '../../functions/replay/memory.js';

const T = Date.parse('2026-11-21T12:00:00Z');
const use = (registrationId: string, jti: string, acceptableUntilMs: number, verifiedAtMs = T): TokenUse => ({ registrationId, jti, acceptableUntilMs, verifiedAtMs });

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return error instanceof WebhookError ? error.code : String(error);
  }
}

describe('createMemoryReplayStore', () => {
  test('bounded in bytes: the use that would pass the bound is refused with replay_store_unavailable, and admitted once time has freed room', async () => {
    const ids = ['sensor-a', 'sensor-b', 'sensor-c'];
    const store = createMemoryReplayStore({
      maxEntries: 1_000,
      maxBytes: ids.reduce((sum, id) => sum + ENTRY_BYTES + deviceBytes(id), 0),
      maxLiveTokensPerDevice: 8,
    });
    for (const id of ids) expect(await store.claim(use(id, 'j1', T + 60_000))).toBe(true);
    expect(await codeOf(store.claim(use('sensor-d', 'j1', T + 60_000)))).toBe('replay_store_unavailable');
    // Still full a millisecond before the three stop being acceptable: nothing is forgotten early.
    expect(await codeOf(store.claim(use('sensor-d', 'j1', T + 120_000, T + 59_999)))).toBe('replay_store_unavailable');
    expect(await store.claim(use('sensor-a', 'j1', T + 60_000, T + 59_999))).toBe(false);
    // Once they have, the sweep gives their bytes back.
    expect(await store.claim(use('sensor-d', 'j1', T + 120_000, T + 61_000))).toBe(true);
  });

  test('a use costs the same for a 1-character and a 256-character jti', async () => {
    const fits = async (jtiLength: number) => {
      const store = createMemoryReplayStore({ maxEntries: 1_000, maxBytes: deviceBytes('sensor-a') + 4 * ENTRY_BYTES, maxLiveTokensPerDevice: 100 });
      let admitted = 0;
      for (let i = 0; i < 10; i++) {
        if ((await codeOf(store.claim(use('sensor-a', `${i}`.padEnd(jtiLength, 'x'), T + 60_000)))) === undefined) admitted += 1;
      }
      return admitted;
    };
    expect(await fits(1)).toBe(4);
    expect(await fits(256)).toBe(4);
  });

  test('the budget counts live uses only: expired ones free it, and a jti reused after its token expired takes its old slot', async () => {
    const store = createMemoryReplayStore({ maxEntries: 1_000, maxBytes: 1 << 20, maxLiveTokensPerDevice: 2 });
    expect(await store.claim(use('sensor-a', 'j1', T + 500))).toBe(true);
    expect(await store.claim(use('sensor-a', 'j2', T + 90_000))).toBe(true);
    expect(await codeOf(store.claim(use('sensor-a', 'j3', T + 90_000)))).toBe('token_replay_budget_exceeded');
    // j1's token stopped being acceptable at T + 500, in the same second: a new token with the same jti is a first use.
    expect(await store.claim(use('sensor-a', 'j1', T + 80_000, T + 600))).toBe(true);
    expect(await store.claim(use('sensor-a', 'j1', T + 80_000, T + 700))).toBe(false);
    expect(await codeOf(store.claim(use('sensor-a', 'j3', T + 90_000, T + 700)))).toBe('token_replay_budget_exceeded');
    // The old bucket of j1 coming due must not forget its new use.
    expect(await codeOf(store.claim(use('sensor-a', 'j3', T + 90_000, T + 5_000)))).toBe('token_replay_budget_exceeded');
    expect(await store.claim(use('sensor-a', 'j1', T + 80_000, T + 5_000))).toBe(false);
    // After a long quiet spell everything has expired and the budget is whole again.
    expect(await store.claim(use('sensor-a', 'j4', T + 86_400_000, T + 3_600_000))).toBe(true);
    expect(await store.claim(use('sensor-a', 'j5', T + 86_400_000, T + 3_600_000))).toBe(true);
  });
});
