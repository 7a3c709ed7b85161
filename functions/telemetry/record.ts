/**
 * What the webhook tells Azure Monitor, as plain data: the attributes of one decision's trace and the dimensions of
 * its metrics, built from the decision's own log record (core/webhook.ts DecisionLog) by an allow-list. The record
 * holds no token, key material or function key by construction; the allow-list keeps it so if the record grows.
 * No OpenTelemetry import here: the exporter (azure-monitor.ts) is loaded only when a connection string is set.
 */
import type { DecisionLog } from '../core/webhook.js';

/** How a decision found its key set: every name served fresh from the cache, or at least one store read waited for. */
export type KeyLookup = 'cache' | 'store';

/** What the composition root knows about one decision beyond its log record. */
export interface DecisionContext {
  /** The W3C traceparent of the invocation (the Functions host's request), so the trace joins it. */
  readonly traceParent?: string;
  readonly keyLookup?: KeyLookup;
}

/**
 * The port the composition root reports to; one implementation sends to Azure Monitor (azure-monitor.ts). Every
 * method returns at once and never throws: telemetry must not slow or fail an admission.
 */
export interface Telemetry {
  decision(record: DecisionLog, context: DecisionContext): void;
  /** One key store read (a Key Vault GET), its outcome (keyStoreOutcome) and how long it took. */
  keyStoreRead(outcome: StoreOutcome, ms: number): void;
  /** One replay store claim, its outcome (replayOutcome) and how long it took. */
  replayClaim(outcome: string, ms: number): void;
  /** Sends what is buffered now (tests, and before the process ends). */
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

export interface StoreOutcome {
  /** found, missing, or the refusal code (key_store_unavailable, key_store_access_denied, device_key_unusable). */
  readonly outcome: string;
  /** The store's HTTP status when it answered one (429: Key Vault throttling). */
  readonly httpStatus?: number;
}

export type AttributeValue = string | number | boolean | string[];

/** Attribute names: a `dps.` prefix keeps them apart from the exporter's own in customDimensions. */
export const ATTR = {
  registrationId: 'dps.registration_id',
  outcome: 'dps.outcome',
  code: 'dps.code',
  status: 'dps.status',
  enrollmentKind: 'dps.enrollment.kind',
  enrollmentGroup: 'dps.enrollment.group_id',
  keySource: 'dps.key.source',
  keyId: 'dps.key.id',
  keyLookup: 'dps.key.lookup',
  hub: 'dps.hub',
  durationMs: 'dps.duration_ms',
  error: 'dps.error',
  setting: 'dps.setting',
  twinDropped: 'dps.twin.dropped',
  /** true on the first decision a worker process makes: its cold start. */
  coldStart: 'dps.cold_start',
  /** With dps.cold_start: milliseconds from the process's start to the end of that first decision. */
  sinceProcessStartMs: 'dps.since_process_start_ms',
} as const;

/** The metric names, as they appear in customMetrics (name column). */
export const METRIC = {
  decisions: 'decisions',
  keyStoreReads: 'key_store_reads',
  keyStoreReadMs: 'key_store_read_ms',
  keyCacheHits: 'key_cache_hits',
  replayClaims: 'replay_claims',
  replayClaimMs: 'replay_claim_ms',
} as const;

/** The span attributes of one decision: only fields of the record named here, each as its type says. */
export function decisionAttributes(record: DecisionLog, context: DecisionContext): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {
    [ATTR.outcome]: record.outcome,
    [ATTR.code]: record.code,
    [ATTR.status]: record.status,
    [ATTR.durationMs]: record.durationMs,
  };
  const put = (name: string, value: unknown) => {
    if (typeof value === 'string' && value !== '') out[name] = value;
  };
  put(ATTR.registrationId, record.registrationId);
  if (record.enrollment !== undefined) {
    // The record says "individual" or "group:<id>" (core/webhook.ts).
    const group = record.enrollment.startsWith('group:') ? record.enrollment.slice('group:'.length) : undefined;
    out[ATTR.enrollmentKind] = group !== undefined ? 'group' : 'individual';
    put(ATTR.enrollmentGroup, group);
  }
  put(ATTR.keySource, record.keySource);
  put(ATTR.keyId, record.keyId);
  put(ATTR.hub, record.hub);
  put(ATTR.error, record.error);
  put(ATTR.setting, record.setting);
  put(ATTR.keyLookup, context.keyLookup);
  if (record.twinDropped !== undefined && record.twinDropped.length > 0) out[ATTR.twinDropped] = record.twinDropped.map(String);
  return out;
}

/** The `decisions` counter's dimensions: few values each, so the metric stays cheap to store and to chart. */
export function decisionDimensions(record: DecisionLog): { code: string; status: number } {
  return { code: record.code, status: record.status };
}

/** A W3C traceparent (version 00), or undefined when the value is not one (https://www.w3.org/TR/trace-context/#traceparent-header). */
export function parseTraceParent(value: string | undefined): { traceId: string; spanId: string; traceFlags: number } | undefined {
  if (value === undefined) return undefined;
  const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(value.trim());
  if (match === null) return undefined;
  const [, traceId, spanId, flags] = match as unknown as [string, string, string, string];
  // All-zero ids are invalid (the spec's rule); such a parent is ignored and the decision starts its own trace.
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, traceFlags: Number.parseInt(flags, 16) };
}
