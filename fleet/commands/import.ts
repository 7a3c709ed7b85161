/**
 * `fleet import`: every row checked first; then ONE paged listing of the vault's secret properties decides each
 * row (new, unchanged, conflict); then the writes, through the token bucket, with bounded concurrency and retries.
 * Idempotent and resumable: a second run (or the run after a kill) finds every stored row unchanged and writes only
 * what is missing. A write whose answer was lost (5xx, no answer) is checked against the secret's versions before it
 * is retried, so no device gets a second version for an unchanged key.
 */
import { dirname, resolve } from 'node:path';
import { FleetError } from '../errors.js';
import { CONTENT_TYPE, DIGEST_TAG } from '../keys.js';
import { formatOf, readManifest, type ManifestFormat } from '../manifest.js';
import { silentProgress, type ProgressSink, type ProgressSnapshot } from '../progress.js';
import { noReport, type Outcome, type Reason, type Report, type ReportLine } from '../report.js';
import { backoffMs, DEFAULT_RETRY, DOCUMENTED_WRITE_LIMIT, realClock, runBounded, TokenBucket, type Clock, type RetryPolicy, type WriteLimit } from '../throttle.js';
import { validateManifest, type PlannedRow } from '../validate.js';
import { classify, VaultError, type StoredSecret, type VaultPort } from '../vault.js';

export const DEFAULT_CONCURRENCY = 8;
/** Tags a store writer adds itself and the comparison ignores (`az keyvault secret set --file` adds file-encoding). */
const TOOL_TAGS = new Set([DIGEST_TAG, 'file-encoding']);

export interface ImportOptions {
  readonly manifest: string;
  readonly format?: ManifestFormat;
  readonly vault: VaultPort;
  /** Rotate keys (and tags / enabled state) that differ from the manifest instead of reporting a conflict. */
  readonly replace?: boolean;
  /** Import the valid rows even when some rows are bad. */
  readonly skipInvalid?: boolean;
  /** Validate and list, then say what would happen; write nothing. */
  readonly dryRun?: boolean;
  /** The webhook's JWT_ALGORITHMS; default ES256. */
  readonly algorithms?: readonly string[];
  readonly writeLimit?: WriteLimit;
  readonly concurrency?: number;
  readonly retry?: RetryPolicy;
  readonly report?: Report;
  readonly progress?: ProgressSink;
  /** One line per refused, conflicting or failed row (and, with dryRun, per row), for stderr. */
  readonly log?: (line: string) => void;
  readonly signal?: AbortSignal;
  readonly clock?: Clock;
}

export interface ImportSummary {
  readonly dryRun: boolean;
  readonly interrupted: boolean;
  readonly rows: number;
  readonly created: number;
  readonly updated: number;
  readonly unchanged: number;
  readonly refused: number;
  readonly conflicts: number;
  readonly failed: number;
  readonly skipped: number;
  readonly wouldCreate: number;
  readonly wouldUpdate: number;
  readonly vault: {
    readonly listCalls: number;
    readonly versionListCalls: number;
    readonly writeAttempts: number;
    readonly writes: number;
    readonly throttled: number;
    readonly unavailable: number;
  };
  /** Time from the first write to the last answer. */
  readonly writeSeconds: number;
  /** Writes a second from the first answer to the last: the pace held. */
  readonly writesPerSecond: number;
  readonly limitPerSecond: number;
}

type Decision =
  | { readonly action: 'unchanged' }
  | { readonly action: 'create' }
  | { readonly action: 'conflict'; readonly reason: 'key_differs' | 'metadata_differs' | 'digest_missing'; readonly storedDigest?: string };

export async function importFleet(options: ImportOptions): Promise<ImportSummary> {
  const clock = options.clock ?? realClock;
  const report = options.report ?? noReport;
  const progress = options.progress ?? silentProgress;
  const log = options.log ?? (() => undefined);
  const retry = options.retry ?? DEFAULT_RETRY;
  const limit = options.writeLimit ?? DOCUMENTED_WRITE_LIMIT;
  const dryRun = options.dryRun === true;
  const counts = { created: 0, updated: 0, unchanged: 0, refused: 0, conflicts: 0, failed: 0, skipped: 0, wouldCreate: 0, wouldUpdate: 0 };
  const vaultCounts = { listCalls: 0, versionListCalls: 0, writeAttempts: 0, writes: 0, throttled: 0, unavailable: 0 };

  // 1. Every row checked before anything is asked of the vault.
  const manifest = await readManifest(options.manifest, options.format ?? formatOf(options.manifest));
  const { planned, refused } = await validateManifest(manifest, {
    baseDir: dirname(resolve(options.manifest)),
    algorithms: options.algorithms ?? ['ES256'],
  });
  for (const r of refused) {
    counts.refused += 1;
    report.add({ line: r.line, outcome: 'refused', reason: r.reason, field: r.field, message: r.message, ...ids(r) });
    log(`line ${r.line}: ${r.field}: ${r.message}`);
  }
  if (refused.length > 0 && options.skipInvalid !== true) {
    report.close();
    throw new FleetError(
      'manifest',
      `${refused.length} of ${refused.length + planned.length} rows refused (listed above); nothing was ${dryRun ? 'checked against the vault' : 'written'}`,
      'fix those lines, or pass --skip-invalid to import the valid rows',
    );
  }

  // 2. One paged listing of the vault: which rows are there already.
  const existing = await listExisting(options.vault, new Set(planned.map((r) => r.secretName)), vaultCounts, options.signal);

  const toWrite: Array<{ row: PlannedRow; update: false | 'key_differs' | 'metadata_differs' | 'digest_missing' }> = [];
  for (const row of planned) {
    const stored = existing.get(row.secretName);
    const decision = decide(row, stored);
    if (decision.action === 'unchanged') {
      counts.unchanged += 1;
      report.add({ ...rowLine(row, 'unchanged', 'same_key') });
      if (dryRun) log(`line ${row.line}: unchanged ${row.kind} ${row.id} (${row.secretName})`);
    } else if (decision.action === 'create') {
      toWrite.push({ row, update: false });
    } else if (options.replace === true) {
      toWrite.push({ row, update: decision.reason });
    } else {
      counts.conflicts += 1;
      report.add({ ...rowLine(row, 'conflict', decision.reason), ...(decision.storedDigest !== undefined && { storedDigest: decision.storedDigest }) });
      log(`line ${row.line}: conflict: ${row.kind} ${row.id} (${row.secretName}) ${conflictText(decision.reason)}; left alone (--replace overwrites it)`);
    }
  }

  if (dryRun) {
    for (const { row, update } of toWrite) {
      if (update === false) counts.wouldCreate += 1;
      else counts.wouldUpdate += 1;
      report.add(rowLine(row, update === false ? 'would_create' : 'would_update', update === false ? 'new' : update));
      log(`line ${row.line}: would ${update === false ? 'create' : `replace (${conflictText(update)})`} ${row.kind} ${row.id} (${row.secretName}, sha256 ${row.digest}, ${row.enabled ? 'enabled' : 'disabled'})`);
    }
    report.close();
    return summary(true, false, 0);
  }

  // 3. The writes.
  const bucket = new TokenBucket(limit, clock);
  const stop = new AbortController();
  const onAbort = () => stop.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let fatal: FleetError | undefined;
  const total = planned.length;
  const started = clock.now();
  let firstAnswer: number | undefined;
  let lastAnswer = started;
  const snapshot = (): ProgressSnapshot => ({
    done: counts.unchanged + counts.conflicts + counts.created + counts.updated + counts.failed,
    total,
    written: counts.created + counts.updated,
    failed: counts.failed,
    elapsedMs: clock.now() - started,
  });
  // Rows written or failed; every other row to write is reported as not attempted at the end.
  const decided = new Set<PlannedRow>();

  const writeOne = async ({ row, update }: (typeof toWrite)[number]): Promise<void> => {
    decided.add(row);
    const outcome = await writeWithRetries(row, update !== false, options.vault, bucket, retry, clock, vaultCounts, stop.signal);
    lastAnswer = clock.now();
    firstAnswer ??= lastAnswer;
    if (outcome === 'aborted') {
      decided.delete(row);
      return;
    }
    if (outcome instanceof FleetError) {
      fatal ??= outcome;
      decided.delete(row);
      stop.abort(outcome);
      return;
    }
    if (outcome === 'written') {
      if (update === false) counts.created += 1;
      else counts.updated += 1;
      report.add(rowLine(row, update === false ? 'created' : 'updated', update === false ? 'new' : update));
    } else {
      counts.failed += 1;
      report.add({ ...rowLine(row, 'failed', outcome.reason), message: outcome.message });
      log(`line ${row.line}: failed: ${row.kind} ${row.id} (${row.secretName}): ${outcome.message}`);
    }
    progress.update(snapshot());
  };

  try {
    progress.update(snapshot());
    await runBounded(toWrite, options.concurrency ?? DEFAULT_CONCURRENCY, writeOne, stop.signal);
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    for (const { row } of toWrite) {
      if (!decided.has(row)) {
        counts.skipped += 1;
        report.add(rowLine(row, 'skipped', 'not_attempted'));
      }
    }
    progress.finish(snapshot());
    report.close();
  }
  if (fatal !== undefined) throw fatal;
  return summary(false, options.signal?.aborted === true, Math.max(0, lastAnswer - started), lastAnswer - (firstAnswer ?? lastAnswer));

  /**
   * `writeMs`: from the start of writing to the last answer. The sustained rate counts from the first answer to the
   * last (the first write also fetches a token and answers the vault's challenge), so it is the pace the bucket held.
   */
  function summary(isDryRun: boolean, interrupted: boolean, writeMs: number, sustainedMs = 0): ImportSummary {
    const written = counts.created + counts.updated;
    return {
      dryRun: isDryRun,
      interrupted,
      rows: manifest.rows.length + manifest.malformed.length,
      ...counts,
      vault: { ...vaultCounts },
      writeSeconds: writeMs / 1000,
      writesPerSecond: sustainedMs > 0 && written > 1 ? ((written - 1) * 1000) / sustainedMs : 0,
      limitPerSecond: (limit.writes * 1000) / limit.windowMs,
    };
  }
}

function ids(r: { id?: string; secretName?: string }): Partial<ReportLine> {
  return { ...(r.id !== undefined && { id: r.id }), ...(r.secretName !== undefined && { secretName: r.secretName }) };
}

function rowLine(row: PlannedRow, outcome: Outcome, reason: Reason): ReportLine {
  return { line: row.line, outcome, reason, kind: row.kind, id: row.id, secretName: row.secretName, digest: row.digest };
}

function conflictText(reason: 'key_differs' | 'metadata_differs' | 'digest_missing'): string {
  switch (reason) {
    case 'key_differs':
      return 'holds a different key';
    case 'metadata_differs':
      return 'holds the same key with other tags or enabled state';
    case 'digest_missing':
      return `has no ${DIGEST_TAG} tag, so its key cannot be compared without reading it`;
  }
}

function ownTags(tags: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(tags).filter(([name]) => !TOOL_TAGS.has(name)));
}

function sameTags(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

/** Whether a stored secret (latest version) is exactly what the row asks for. */
function matches(row: PlannedRow, stored: StoredSecret): boolean {
  return stored.tags[DIGEST_TAG] === row.digest && stored.enabled === row.enabled && sameTags(ownTags(stored.tags), row.tags);
}

function decide(row: PlannedRow, stored: StoredSecret | undefined): Decision {
  if (stored === undefined) return { action: 'create' };
  const storedDigest = stored.tags[DIGEST_TAG];
  if (storedDigest === undefined) return { action: 'conflict', reason: 'digest_missing' };
  if (storedDigest !== row.digest) return { action: 'conflict', reason: 'key_differs', storedDigest };
  if (!matches(row, stored)) return { action: 'conflict', reason: 'metadata_differs', storedDigest };
  return { action: 'unchanged' };
}

type Counts = { listCalls: number; versionListCalls: number; writeAttempts: number; writes: number; throttled: number; unavailable: number };

async function listExisting(vault: VaultPort, wanted: ReadonlySet<string>, counts: Counts, signal?: AbortSignal): Promise<Map<string, StoredSecret>> {
  const found = new Map<string, StoredSecret>();
  if (wanted.size === 0) return found;
  const before = vault.listCalls;
  try {
    for await (const page of vault.listSecrets(signal)) {
      for (const item of page) if (wanted.has(item.name)) found.set(item.name, item);
    }
  } catch (error) {
    const e = classify(error, 'list secrets');
    if (e.kind === 'aborted' || signal?.aborted) throw new FleetError('interrupted', 'stopped while listing the vault; nothing was written');
    if (e.kind === 'denied') throw accessDenied(e, 'list');
    throw new FleetError('vault_unavailable', `${e.message} (after the client's retries); nothing was written`);
  } finally {
    counts.listCalls += vault.listCalls - before;
  }
  return found;
}

function accessDenied(e: VaultError, what: 'list' | 'write'): FleetError {
  return new FleetError(
    'access_denied',
    e.message,
    what === 'list'
      ? 'the identity needs to list secrets (Key Vault Secrets Officer, or Secrets User plus a write role); at a terminal run `az login` first'
      : 'the identity needs "Key Vault Secrets Officer" on the vault to write secrets',
  );
}

type WriteOutcome = 'written' | 'aborted' | FleetError | { reason: 'throttled' | 'vault_unavailable' | 'write_refused' | 'deleted_recoverable'; message: string };

async function writeWithRetries(
  row: PlannedRow,
  isUpdate: boolean,
  vault: VaultPort,
  bucket: TokenBucket,
  retry: RetryPolicy,
  clock: Clock,
  counts: Counts,
  signal: AbortSignal,
): Promise<WriteOutcome> {
  const write = { value: row.pem, contentType: CONTENT_TYPE, tags: { ...row.tags, [DIGEST_TAG]: row.digest }, enabled: row.enabled };
  for (let attempt = 1; ; attempt++) {
    try {
      await bucket.take(signal);
    } catch {
      return 'aborted';
    }
    counts.writeAttempts += 1;
    let failure: VaultError;
    try {
      await vault.setSecret(row.secretName, write, signal);
      counts.writes += 1;
      return 'written';
    } catch (error) {
      failure = classify(error, `write ${row.secretName}`);
    }
    switch (failure.kind) {
      case 'aborted':
        return 'aborted';
      case 'denied':
        return accessDenied(failure, 'write');
      case 'deleted':
        return { reason: 'deleted_recoverable', message: failure.message };
      case 'refused':
        return { reason: 'write_refused', message: failure.message };
      case 'throttled':
        counts.throttled += 1;
        bucket.throttled();
        break;
      case 'unavailable':
        counts.unavailable += 1;
        break;
    }
    if (attempt >= retry.attempts) {
      return { reason: failure.kind === 'throttled' ? 'throttled' : 'vault_unavailable', message: `${failure.message} (after ${attempt} attempts; run again to finish)` };
    }
    try {
      await clock.sleep(backoffMs(retry, attempt), signal);
    } catch {
      return 'aborted';
    }
    // A 5xx or a lost answer may have come after the vault stored the version: look before writing it again.
    if (failure.kind === 'unavailable') {
      try {
        counts.versionListCalls += 1;
        if (landed(row, await vault.listVersions(row.secretName, signal), isUpdate)) {
          counts.writes += 1;
          return 'written';
        }
      } catch (error) {
        const e = classify(error, `list versions of ${row.secretName}`);
        if (e.kind === 'aborted') return 'aborted';
        if (e.kind === 'denied') return accessDenied(e, 'list');
        // Otherwise: the next attempt decides.
      }
    }
  }
}

/** Whether the newest version (any version, for a secret that did not exist before) is the one we meant to write. */
function landed(row: PlannedRow, versions: readonly StoredSecret[], isUpdate: boolean): boolean {
  if (!isUpdate) return versions.some((v) => matches(row, v));
  const newest = Math.max(...versions.map((v) => v.createdOn ?? -Infinity));
  return versions.some((v) => (v.createdOn ?? -Infinity) === newest && matches(row, v));
}
