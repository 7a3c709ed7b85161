import { createHash } from 'node:crypto';
import { RestError, TableClient } from '@azure/data-tables';
import { WebhookError } from '../core/reasons.js';
import type { ReplayStore } from '../core/ports.js';

interface UsedToken {
  partitionKey: string;
  rowKey: string;
  expiresAt: number;
}

const TIMEOUT_MS = 2_000;

function statusOf(error: unknown): number | undefined {
  return error instanceof RestError ? error.statusCode : undefined;
}

function unavailable(what: string, error: unknown): WebhookError {
  const status = statusOf(error);
  return new WebhookError('replay_store_unavailable', `the replay table could not ${what}${status !== undefined ? ` (HTTP ${status})` : ''}`);
}

/**
 * Azure Table Storage, shared by every instance of a scaled-out function app. A first use is a conditional insert
 * (409 when the row exists), so two instances racing on one jti cannot both win. A row whose token has expired is
 * taken over with an ETag-conditional update, for the same reason. Keys are hashed: rows carry no token data.
 */
export function createTableReplayStore(options: { connectionString: string; tableName: string }): ReplayStore {
  const endpoint = /TableEndpoint=([^;]+)/i.exec(options.connectionString)?.[1];
  const loopback = endpoint !== undefined && /^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:|\/)/i.test(endpoint);
  // Plain http only where the connection string names a loopback emulator (Azurite); the SDK refuses it otherwise.
  const client = TableClient.fromConnectionString(options.connectionString, options.tableName, {
    allowInsecureConnection: loopback || /UseDevelopmentStorage=true/i.test(options.connectionString),
    retryOptions: { maxRetries: 1 },
  });
  let ready: Promise<void> | undefined;

  function ensureTable(): Promise<void> {
    ready ??= client.createTable({ abortSignal: AbortSignal.timeout(TIMEOUT_MS) }).catch((error: unknown) => {
      ready = undefined;
      throw unavailable('be created', error);
    });
    return ready;
  }

  return {
    async claim(key, expiresAtMs) {
      await ensureTable();
      const hash = createHash('sha256').update(key).digest('hex');
      const entity: UsedToken = { partitionKey: hash.slice(0, 4), rowKey: hash, expiresAt: expiresAtMs };
      try {
        await client.createEntity(entity, { abortSignal: AbortSignal.timeout(TIMEOUT_MS) });
        return true;
      } catch (error) {
        if (statusOf(error) !== 409) throw unavailable('record the token', error);
      }
      let existing;
      try {
        existing = await client.getEntity<UsedToken>(entity.partitionKey, entity.rowKey, { abortSignal: AbortSignal.timeout(TIMEOUT_MS) });
      } catch (error) {
        throw unavailable('read a used token', error);
      }
      if (existing.expiresAt > Date.now()) return false;
      try {
        await client.updateEntity(entity, 'Replace', { etag: existing.etag, abortSignal: AbortSignal.timeout(TIMEOUT_MS) });
        return true;
      } catch (error) {
        // 412: another instance took the expired row first; this use is the replay.
        if (statusOf(error) === 412) return false;
        throw unavailable('record the token', error);
      }
    },
  };
}
