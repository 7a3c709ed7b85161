/**
 * Keeping under Key Vault's per-vault write limit: secret CREATE 300 per 10 s, shared by every client of the vault
 * [azure-cli-facts.md §3 K7]. A token bucket starts writes at most `rate` a millisecond with at most `burst` at once,
 * so any window of `windowMs` sees at most burst + rate * windowMs starts; both are set so that sum stays a little
 * under the limit (HEADROOM), leaving room for network jitter. A 429 (another writer on the same vault) drops the
 * rate by a fifth and empties the bucket; the rate creeps back after a window without one.
 */

export interface WriteLimit {
  readonly writes: number;
  readonly windowMs: number;
}

export const DOCUMENTED_WRITE_LIMIT: WriteLimit = { writes: 300, windowMs: 10_000 };

/** Fraction of the limit the bucket aims for in any window (burst included). */
const HEADROOM = 0.95;
const BURST_FRACTION = 0.01;

export interface Clock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

export class TokenBucket {
  readonly maxRate: number;
  readonly burst: number;
  private rate: number;
  private tokens: number;
  private last: number;
  private lastThrottle = -Infinity;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly limit: WriteLimit,
    private readonly clock: Clock = realClock,
  ) {
    this.burst = Math.max(1, Math.floor(limit.writes * BURST_FRACTION));
    this.maxRate = Math.max(0, limit.writes * HEADROOM - this.burst) / limit.windowMs;
    this.rate = this.maxRate;
    this.tokens = this.burst;
    this.last = clock.now();
  }

  /** Waits for a token; callers are served in order. */
  take(signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(() => this.acquire(signal));
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  /** The vault said 429: slow down and start from an empty bucket. */
  throttled(): void {
    this.refill();
    this.rate = Math.max(this.maxRate * 0.1, this.rate * 0.8);
    this.tokens = Math.min(this.tokens, 0);
    this.lastThrottle = this.clock.now();
  }

  get currentRatePerSecond(): number {
    return this.rate * 1000;
  }

  private refill(): void {
    const now = this.clock.now();
    const elapsed = now - this.last;
    this.last = now;
    if (this.rate < this.maxRate && now - this.lastThrottle > this.limit.windowMs) {
      this.rate = Math.min(this.maxRate, this.rate * (1 + elapsed / this.limit.windowMs));
    }
    this.tokens = Math.min(this.burst, this.tokens + elapsed * this.rate);
  }

  private async acquire(signal?: AbortSignal): Promise<void> {
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      this.refill();
      if (this.tokens >= 1) {
        this.tokens -= 1;
        return;
      }
      await this.clock.sleep(Math.max(1, (1 - this.tokens) / this.rate), signal);
    }
  }
}

export interface RetryPolicy {
  /** Attempts in all, the first included. Default 6: the documented back-off of 1, 2, 4, 8, 16 s [K7]. */
  readonly attempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, baseDelayMs: 1_000, maxDelayMs: 16_000 };

/** The wait before retry number `retry` (1-based): base * 2^(retry-1), capped, with +-20 % jitter. */
export function backoffMs(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const plain = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  return Math.round(plain * (0.8 + 0.4 * random()));
}

/** Runs `tasks` with at most `limit` in flight; stops taking new ones once `signal` aborts. */
export async function runBounded<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>, signal?: AbortSignal): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length && !signal?.aborted) {
      const item = items[next++]!;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}
