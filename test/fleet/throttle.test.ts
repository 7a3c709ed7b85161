/**
 * The token bucket keeps any window of the vault's limit under the limit (burst included), sustains at least 0.9
 * of it, and slows down after a 429; the back-off follows the documented 1, 2, 4, 8, 16 s. A fake clock: no timing.
 * Also the two progress displays.
 */
import { describe, expect, test } from 'vitest';
import { plainProgress, ttyProgress } from '../../fleet/progress.js';
import { backoffMs, DEFAULT_RETRY, TokenBucket, type Clock } from '../../fleet/throttle.js';

function fakeClock(): Clock & { t: number } {
  const clock = {
    t: 0,
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.t += ms;
    },
  };
  return clock;
}

/** The most starts in any window of `windowMs` (sliding), and the overall rate. */
function peakWindow(starts: number[], windowMs: number): number {
  let peak = 0;
  let first = 0;
  for (let i = 0; i < starts.length; i++) {
    while (starts[i]! - starts[first]! >= windowMs) first++;
    peak = Math.max(peak, i - first + 1);
  }
  return peak;
}

describe('TokenBucket', () => {
  test.each([
    [300, 10_000, 0.93],
    [3_000, 10_000, 0.93],
    // A small limit still needs a whole token of burst and keeps 5 % headroom: a larger share of the window.
    [20, 1_000, 0.85],
    [7, 10_000, 0.8],
  ])('%i per %i ms: never more in any window, at least %f of it sustained', async (writes, windowMs, share) => {
    const clock = fakeClock();
    const bucket = new TokenBucket({ writes, windowMs }, clock);
    const starts: number[] = [];
    for (let i = 0; i < writes * 5; i++) {
      await bucket.take();
      starts.push(clock.t);
    }
    expect(peakWindow(starts, windowMs)).toBeLessThanOrEqual(writes);
    const rate = (starts.length - 1) / (starts.at(-1)! - starts[0]!);
    expect(rate / (writes / windowMs)).toBeGreaterThanOrEqual(share);
  });

  test('a 429 slows it down and empties it; the rate comes back after a quiet window', async () => {
    const clock = fakeClock();
    const bucket = new TokenBucket({ writes: 300, windowMs: 10_000 }, clock);
    const full = bucket.currentRatePerSecond;
    bucket.throttled();
    expect(bucket.currentRatePerSecond).toBeCloseTo(full * 0.8);
    const t0 = clock.t;
    await bucket.take();
    expect(clock.t).toBeGreaterThan(t0);
    clock.t += 20_000;
    await bucket.take();
    expect(bucket.currentRatePerSecond).toBeCloseTo(full);
  });

  test('callers are served in order and one at a time', async () => {
    const clock = fakeClock();
    const bucket = new TokenBucket({ writes: 10, windowMs: 1_000 }, clock);
    const order: number[] = [];
    await Promise.all(Array.from({ length: 30 }, (_, i) => bucket.take().then(() => order.push(i))));
    expect(order).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });
});

test('back-off: 1, 2, 4, 8, 16 s (+-20 %), capped', () => {
  expect([1, 2, 3, 4, 5, 6].map((n) => backoffMs(DEFAULT_RETRY, n, () => 0.5))).toEqual([1000, 2000, 4000, 8000, 16000, 16000]);
  expect(backoffMs(DEFAULT_RETRY, 1, () => 0)).toBe(800);
  expect(backoffMs(DEFAULT_RETRY, 1, () => 1)).toBe(1200);
});

describe('progress', () => {
  test('a terminal gets one redrawn bar: done of total, rate, time left, failures', () => {
    let out = '';
    let now = 0;
    const bar = ttyProgress((t) => (out += t), 100, 100, () => now);
    bar.update({ done: 50, total: 200, written: 50, failed: 2, elapsedMs: 2_000 });
    now = 50;
    bar.update({ done: 51, total: 200, written: 51, failed: 2, elapsedMs: 2_050 }); // too soon: not drawn
    bar.finish({ done: 200, total: 200, written: 198, failed: 2, elapsedMs: 8_000 });
    const frames = out.split('\r').filter((f) => f !== '');
    expect(frames).toHaveLength(2);
    expect(frames[0]).toMatch(/^\[#+-+\] 50\/200 25% 25\.0 writes\/s ETA 6s failed 2/);
    expect(frames[1]).toMatch(/^\[#+\] 200\/200 100% .* failed 2\x1b\[K\n$/);
  });

  test('a log gets a plain line every few seconds, and a last one', () => {
    const lines: string[] = [];
    let now = 0;
    const plain = plainProgress((t) => lines.push(t), 5_000, () => now);
    for (let s = 1; s <= 12; s++) {
      now = s * 1000;
      plain.update({ done: s * 10, total: 120, written: s * 10, failed: 0, elapsedMs: now });
    }
    plain.finish({ done: 120, total: 120, written: 120, failed: 0, elapsedMs: 12_000 });
    expect(lines).toEqual([
      'progress: 50/120 rows (41%), 50 written, 10.0 writes/s, 7s left, 0 failed\n',
      'progress: 100/120 rows (83%), 100 written, 10.0 writes/s, 2s left, 0 failed\n',
      'progress: 120/120 rows (100%), 120 written, 10.0 writes/s, 0s left, 0 failed\n',
    ]);
  });
});
