/**
 * The JSON Lines report: one line per manifest row with its outcome and a stable reason code, written as each row is
 * decided (so a killed run still leaves what it did). Ids, secret names, tags and digests only: never a key.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { FleetError } from './errors.js';
import type { RefusalReason } from './validate.js';

export type Outcome = 'created' | 'updated' | 'unchanged' | 'refused' | 'conflict' | 'failed' | 'skipped' | 'would_create' | 'would_update';

export type Reason =
  | RefusalReason
  /** created / would_create: nothing was stored under the name. */
  | 'new'
  /** unchanged: the stored key has the same digest, tags and enabled state. */
  | 'same_key'
  /** conflict without --replace; updated (or would_update) with it. */
  | 'key_differs'
  | 'metadata_differs'
  | 'digest_missing'
  /** failed: retries spent on 429s / on 5xx or no answer; the vault refused the write; the name is soft-deleted. */
  | 'throttled'
  | 'vault_unavailable'
  | 'write_refused'
  | 'deleted_recoverable'
  /** skipped: the run stopped (Ctrl-C, access denied) before this row. */
  | 'not_attempted';

export interface ReportLine {
  readonly line: number;
  readonly outcome: Outcome;
  readonly reason: Reason;
  readonly kind?: 'device' | 'group';
  readonly id?: string;
  readonly secretName?: string;
  readonly field?: string;
  readonly message?: string;
  /** public-key-sha256 of the manifest's key. */
  readonly digest?: string;
  /** public-key-sha256 stored in the vault, for conflicts. */
  readonly storedDigest?: string;
}

export interface Report {
  add(line: ReportLine): void;
  close(): void;
}

export const noReport: Report = { add: () => undefined, close: () => undefined };

export function fileReport(path: string): Report {
  let fd: number;
  try {
    fd = openSync(path, 'w', 0o644);
  } catch (error) {
    throw new FleetError('usage', `--report ${path}: cannot write it (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return {
    add: (line) => void writeSync(fd, `${JSON.stringify(line)}\n`),
    close: () => closeSync(fd),
  };
}
