/**
 * Remembers which token ids were used, so a `jti` is accepted once within its lifetime. `claim` answers true for
 * the first use and false for every later one; it throws `WebhookError('replay_store_unavailable')` when it cannot
 * tell, and the webhook then refuses to decide (503) rather than risk admitting a replay.
 */
export interface ReplayStore {
  claim(key: string, expiresAtMs: number): Promise<boolean>;
  close?(): Promise<void>;
}
