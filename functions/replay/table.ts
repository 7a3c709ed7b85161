import { createHash } from 'node:crypto';
import type { TokenCredential } from '@azure/identity';
import { RestError, TableClient, type TransactionAction } from '@azure/data-tables';
import { WebhookError } from '../core/reasons.js';
import type { ReplayStore, TokenUse } from '../core/ports.js';

/** How the store reaches the table: the managed identity in Azure, a connection string for Azurite and local runs. */
export type TableAccess =
  | { readonly kind: 'identity'; readonly accountUrl: string; readonly credential: TokenCredential }
  | { readonly kind: 'connection-string'; readonly connectionString: string; readonly allowInsecureConnection: boolean };

export interface TableReplayOptions {
  readonly access: TableAccess;
  readonly tableName: string;
  /** Most live `jti`s one registration may hold; the next is refused (`token_replay_budget_exceeded`). */
  readonly maxLiveTokensPerDevice: number;
}

/** One used token. No token data: the row key is a hash. */
type UsedToken = {
  partitionKey: string;
  rowKey: string;
  /** Until when a verifier could still accept the token (ms since the epoch): exp + clock skew. */
  acceptableUntil: number;
};

/** One per registration: the `acceptableUntil` of each of its uses still live when it was last written (JSON). */
type LiveUses = {
  partitionKey: string;
  rowKey: typeof LIVE_ROW;
  live: string;
};

const LIVE_ROW = 'live';
const TIMEOUT_MS = 2_000;
/** Claims of one registration racing each other on other instances: each lost race costs one more round. */
const MAX_ROUNDS = 4;

function statusOf(error: unknown): number | undefined {
  return error instanceof RestError ? error.statusCode : undefined;
}

function unavailable(what: string, error: unknown): WebhookError {
  const status = statusOf(error);
  return new WebhookError('replay_store_unavailable', `the replay table could not ${what}${status !== undefined ? ` (HTTP ${status})` : ''}`);
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

function liveTimes(row: LiveUses | undefined, atMs: number): number[] {
  if (row === undefined) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(row.live);
  } catch {
    parsed = undefined;
  }
  // A row this store did not write: fail closed rather than guess what it counts.
  if (!Array.isArray(parsed) || !parsed.every((t) => typeof t === 'number')) {
    throw new WebhookError('replay_store_unavailable', 'the replay table holds a live-uses row it cannot read');
  }
  return (parsed as number[]).filter((t) => t > atMs);
}

function clientFor(access: TableAccess, tableName: string): TableClient {
  // One attempt more at most: DPS retries a 503 anyway.
  const retryOptions = { maxRetries: 1 };
  if (access.kind === 'identity') return new TableClient(access.accountUrl, tableName, access.credential, { retryOptions });
  return TableClient.fromConnectionString(access.connectionString, tableName, {
    allowInsecureConnection: access.allowInsecureConnection,
    retryOptions,
  });
}

/**
 * Azure Table Storage, shared by every instance of a scaled-out function app. Each registration has a partition
 * (its id hashed): one row per used token, and one row listing until when each of its live uses stays acceptable,
 * which is its budget. A first use is one entity-group transaction over both rows: insert the token's row (409 when
 * it exists) and write the budget row conditioned on the ETag read just before (412 when another instance claimed
 * for the same registration meanwhile, which costs another round). So two instances racing on one jti cannot both
 * win, and racing claims cannot overrun the budget. A row whose token is no longer acceptable is taken over the same
 * way. Liveness is judged at the instant the token was verified, never at a later clock reading.
 */
export function createTableReplayStore(options: TableReplayOptions): ReplayStore {
  const client = clientFor(options.access, options.tableName);
  const budget = options.maxLiveTokensPerDevice;
  let ready: Promise<void> | undefined;

  function ensureTable(): Promise<void> {
    ready ??= client.createTable({ abortSignal: AbortSignal.timeout(TIMEOUT_MS) }).catch((error: unknown) => {
      ready = undefined;
      throw unavailable('be created', error);
    });
    return ready;
  }

  async function read<T extends object>(partitionKey: string, rowKey: string): Promise<(T & { etag: string }) | undefined> {
    try {
      return await client.getEntity<T>(partitionKey, rowKey, { abortSignal: AbortSignal.timeout(TIMEOUT_MS) });
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw unavailable('read a used token', error);
    }
  }

  /** 'done', or 'conflict' when a row changed under us (409 on an insert, 412 on a conditional write). */
  async function commit(actions: TransactionAction[]): Promise<'done' | 'conflict'> {
    try {
      await client.submitTransaction(actions, { abortSignal: AbortSignal.timeout(TIMEOUT_MS) });
      return 'done';
    } catch (error) {
      const status = statusOf(error);
      if (status === 409 || status === 412) return 'conflict';
      throw unavailable('record the token', error);
    }
  }

  return {
    async claim(use: TokenUse) {
      await ensureTable();
      const partitionKey = sha256(use.registrationId);
      const tokenRow: UsedToken = { partitionKey, rowKey: `u${sha256(use.jti)}`, acceptableUntil: use.acceptableUntilMs };
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const liveRow = await read<LiveUses>(partitionKey, LIVE_ROW);
        const live = liveTimes(liveRow, use.verifiedAtMs);
        const nextLive: LiveUses = { partitionKey, rowKey: LIVE_ROW, live: JSON.stringify([...live, use.acceptableUntilMs]) };
        const writeLive: TransactionAction = liveRow === undefined
          ? ['create', nextLive]
          : ['update', nextLive, 'Replace', { etag: liveRow.etag }];

        const existing = live.length >= budget || round > 0 ? await read<UsedToken>(partitionKey, tokenRow.rowKey) : undefined;
        if (existing !== undefined && existing.acceptableUntil > use.verifiedAtMs) return false;
        if (live.length >= budget) {
          throw new WebhookError('token_replay_budget_exceeded',
            `this registration already has ${live.length} unexpired tokens on record; a new one is accepted when one of them expires`);
        }
        const writeToken: TransactionAction = existing === undefined
          ? ['create', tokenRow]
          // The same jti after its earlier token stopped being acceptable: a new token takes the row over.
          : ['update', tokenRow, 'Replace', { etag: existing.etag }];
        if ((await commit([writeToken, writeLive])) === 'done') return true;
        // Lost a race: the token's row appeared (then the next round finds it live), or another claim of this
        // registration wrote the budget row first. Read both again.
      }
      throw new WebhookError('replay_store_unavailable', 'the replay table kept changing under this claim; try again');
    },
  };
}
