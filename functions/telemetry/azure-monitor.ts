/**
 * The Telemetry port over OpenTelemetry and the Azure Monitor exporter, as the Functions docs set it up for a Node.js
 * app (Learn: azure-functions/opentelemetry-howto, JavaScript: @azure/monitor-opentelemetry-exporter under the
 * OpenTelemetry SDK). Loaded by a dynamic import only when APPLICATIONINSIGHTS_CONNECTION_STRING is set, so a run
 * without it never loads OpenTelemetry, opens no socket and keeps its cold start.
 *
 * - One span per decision ("validatejwt decision", kind INTERNAL): the exporter sends it as a dependency of type
 *   InProc, a child of the host's request when the invocation's traceparent is handed in. Its attributes are
 *   record.ts's allow-list; they land in customDimensions.
 * - Metrics (customMetrics): `decisions` by code and status, `key_cache_hits`, `key_store_reads` and
 *   `key_store_read_ms` by outcome (and HTTP status), `replay_claims` and `replay_claim_ms` by outcome. The decision's
 *   own time is the span's duration.
 * - The providers are this module's own, not registered globally: the Azure SDK clients (Key Vault, Tables) keep
 *   their no-op tracer, so no span is made per HTTP call to the vault.
 * - Offline storage off: a Flex Consumption instance's disk goes with the instance, and a retry file written there
 *   would only be replayed by the same instance. What ingestion refuses or cannot take is dropped, never retried from
 *   disk; a decision never waits for it.
 */
import { AzureMonitorMetricExporter, AzureMonitorTraceExporter } from '@azure/monitor-opentelemetry-exporter';
import type { TokenCredential } from '@azure/core-auth';
import { hostname } from 'node:os';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Counter, type Histogram, type ObservableResult } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { TelemetryConfig } from '../config.js';
import { ATTR, decisionAttributes, decisionDimensions, METRIC, parseTraceParent, type Telemetry } from './record.js';

type AzureMonitorConfig = Extract<TelemetryConfig, { kind: 'azure-monitor' }>;

const SCOPE = 'dps-jwt-webhook';

export function createAzureMonitorTelemetry(config: AzureMonitorConfig, credential: TokenCredential | undefined): Telemetry {
  const exporterOptions = {
    connectionString: config.connectionString,
    disableOfflineStorage: true,
    ...(credential !== undefined && { credential }),
  };
  // service.name becomes cloud_RoleName and service.instance.id cloud_RoleInstance (the exporter's resource mapping,
  // utils/common.ts createTagsFromResource). Without an instance id the exporter asks os.hostname() for every item.
  const resource = resourceFromAttributes({ 'service.name': config.roleName, 'service.instance.id': config.roleInstance ?? hostname() });
  const tracerProvider = new BasicTracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor(new AzureMonitorTraceExporter(exporterOptions))],
  });
  const reader = new PeriodicExportingMetricReader({
    exporter: new AzureMonitorMetricExporter(exporterOptions),
    exportIntervalMillis: config.metricIntervalMs,
    exportTimeoutMillis: Math.min(30_000, config.metricIntervalMs),
  });
  const meterProvider = new MeterProvider({ resource, readers: [reader] });
  const tracer = tracerProvider.getTracer(SCOPE);
  const meter = meterProvider.getMeter(SCOPE);
  const ms = { unit: 'ms' };
  // The per-decision counts are kept in plain maps and read by the SDK once per export (observable counters of running
  // totals): a decision then costs one map increment here, not an attribute set hashed by the SDK on every call.
  const decisionCounts = new Map<string, { code: string; status: number; n: number }>();
  let cacheHits = 0;
  meter.createObservableCounter(METRIC.decisions, { description: 'Decisions by reason code and HTTP status' }).addCallback((result: ObservableResult) => {
    for (const { code, status, n } of decisionCounts.values()) result.observe(n, { code, status });
  });
  meter.createObservableCounter(METRIC.keyCacheHits, { description: 'Decisions whose key set came from the cache' }).addCallback((result: ObservableResult) => {
    result.observe(cacheHits);
  });
  const keyStoreReads: Counter = meter.createCounter(METRIC.keyStoreReads, { description: 'Key store (Key Vault) reads by outcome' });
  const keyStoreReadMs: Histogram = meter.createHistogram(METRIC.keyStoreReadMs, { ...ms, description: 'Key store read latency' });
  const replayClaims: Counter = meter.createCounter(METRIC.replayClaims, { description: 'Replay store claims by outcome' });
  const replayClaimMs: Histogram = meter.createHistogram(METRIC.replayClaimMs, { ...ms, description: 'Replay store claim latency' });

  // A fault of the SDK (a bug, an odd value) must never reach the decision that reported it.
  const quietly = (step: () => void) => {
    try {
      step();
    } catch {
      // dropped: telemetry is best effort
    }
  };

  let coldStart = true;
  return {
    decision(record, context) {
      quietly(() => {
        const end = Date.now();
        const parent = parseTraceParent(context.traceParent);
        const parentContext = parent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, { ...parent, isRemote: true });
        const attributes = decisionAttributes(record, context) as Attributes;
        if (coldStart) {
          // The process's first decision: what a device waited for on a cold start, counted from the process's start.
          coldStart = false;
          attributes[ATTR.coldStart] = true;
          attributes[ATTR.sinceProcessStartMs] = Math.round(performance.now());
        }
        const span = tracer.startSpan('validatejwt decision', { kind: SpanKind.INTERNAL, startTime: end - record.durationMs, attributes }, parentContext);
        // A refusal is a decision made; only an answer that is no decision (5xx: retry, error) marks the span failed.
        if (record.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: record.code });
        span.end(end);
        const key = `${record.code} ${record.status}`;
        const counted = decisionCounts.get(key);
        if (counted !== undefined) counted.n += 1;
        else decisionCounts.set(key, { ...decisionDimensions(record), n: 1 });
        if (context.keyLookup === 'cache') cacheHits += 1;
      });
    },
    keyStoreRead(outcome, took) {
      quietly(() => {
        const dims = { outcome: outcome.outcome, ...(outcome.httpStatus !== undefined && { http_status: outcome.httpStatus }) };
        keyStoreReads.add(1, dims);
        keyStoreReadMs.record(took, dims);
      });
    },
    replayClaim(outcome, took) {
      quietly(() => {
        replayClaims.add(1, { outcome });
        replayClaimMs.record(took, { outcome });
      });
    },
    async flush() {
      await Promise.allSettled([tracerProvider.forceFlush(), meterProvider.forceFlush()]);
    },
    async shutdown() {
      await Promise.allSettled([tracerProvider.shutdown(), meterProvider.shutdown()]);
    },
  };
}
