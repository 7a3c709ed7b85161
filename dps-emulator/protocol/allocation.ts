/**
 * Custom allocation as DPS does it: the AllocationRequest it POSTs to the webhook (dps-protocol §1) and what it makes
 * of the answer (§2). Pure functions; the HTTP call is the caller's.
 */
import { createHash } from 'node:crypto';
import type { DpsErrorKind } from './errors.js';
import {
  maskWebhookUrl,
  type EnrollmentGroup,
  type IndividualEnrollment,
  type ResolvedEnrollment,
  type TwinState,
} from './enrollments.js';

/** An enrollment as DPS shows it to the webhook: everything but the keys, webhook query masked. */
export type PublicEnrollment = Record<string, unknown>;

export interface DeviceRuntimeContext {
  registrationId: string;
  currentIotHubHostName?: string;
  currentDeviceId?: string;
  symmetricKey: Record<string, never>;
  payload?: unknown;
}

export interface AllocationRequest {
  individualEnrollment?: PublicEnrollment;
  enrollmentGroup?: PublicEnrollment;
  deviceRuntimeContext: DeviceRuntimeContext;
  linkedHubs: string[];
}

export interface PreviousAssignment {
  readonly hub: string;
  readonly deviceId: string;
  readonly substatus: Substatus;
}

export type Substatus = 'initialAssignment' | 'deviceDataMigrated' | 'deviceDataReset' | 'reprovisionedToInitialAssignment';

/** Stable etag and timestamps for enrollments whose file gave none (DPS always sends them). */
export interface EnrollmentMeta {
  readonly loadedAtUtc: string;
}

export function enrollmentEtag(e: IndividualEnrollment | EnrollmentGroup): string {
  if (e.etag) return e.etag;
  const h = createHash('sha256').update(JSON.stringify(e)).digest('hex');
  return `"${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}"`;
}

export function publicEnrollment(r: ResolvedEnrollment, meta: EnrollmentMeta): PublicEnrollment {
  const e = r.enrollment;
  const out: PublicEnrollment = {};
  if (r.kind === 'individual') {
    out.registrationId = r.enrollment.registrationId;
    if (r.enrollment.deviceId !== undefined) out.deviceId = r.enrollment.deviceId;
  } else {
    out.enrollmentGroupId = r.enrollment.enrollmentGroupId;
  }
  // Never the keys: the webhook has no business with them.
  out.attestation = { type: 'symmetricKey' };
  out.capabilities = e.capabilities ?? { iotEdge: false };
  out.etag = enrollmentEtag(e);
  out.provisioningStatus = e.provisioningStatus ?? 'enabled';
  out.reprovisionPolicy = {
    updateHubAssignment: e.reprovisionPolicy?.updateHubAssignment ?? true,
    migrateDeviceData: e.reprovisionPolicy?.migrateDeviceData ?? true,
  };
  if (e.initialTwin) out.initialTwin = e.initialTwin;
  out.createdDateTimeUtc = e.createdDateTimeUtc ?? meta.loadedAtUtc;
  out.lastUpdatedDateTimeUtc = e.lastUpdatedDateTimeUtc ?? meta.loadedAtUtc;
  out.allocationPolicy = e.allocationPolicy ?? 'hashed';
  out.iotHubs = [...e.iotHubs];
  if (e.customAllocationDefinition) {
    out.customAllocationDefinition = {
      webhookUrl: maskWebhookUrl(e.customAllocationDefinition.webhookUrl),
      apiVersion: e.customAllocationDefinition.apiVersion,
    };
  }
  return out;
}

export interface BuildAllocationRequestInput {
  readonly resolved: ResolvedEnrollment;
  readonly registrationId: string;
  /** `undefined` when the device sent no payload: the field is then absent, as with DPS. */
  readonly devicePayload: unknown;
  /** Set on re-registration of a registration this DPS already assigned. */
  readonly previous: PreviousAssignment | undefined;
  readonly meta: EnrollmentMeta;
}

export function buildAllocationRequest(input: BuildAllocationRequestInput): AllocationRequest {
  const ctx: DeviceRuntimeContext = { registrationId: input.registrationId, symmetricKey: {} };
  if (input.previous) {
    ctx.currentIotHubHostName = input.previous.hub;
    ctx.currentDeviceId = input.previous.deviceId;
  }
  if (input.devicePayload !== undefined) ctx.payload = input.devicePayload;
  const enrollment = publicEnrollment(input.resolved, input.meta);
  const req: AllocationRequest =
    input.resolved.kind === 'individual'
      ? { individualEnrollment: enrollment, deviceRuntimeContext: ctx, linkedHubs: [] }
      : { enrollmentGroup: enrollment, deviceRuntimeContext: ctx, linkedHubs: [] };
  req.linkedHubs = [...input.resolved.enrollment.iotHubs];
  return req;
}

/** One webhook call as seen by DPS: an HTTP answer, or no answer at all (refused, reset, timed out). */
export type WebhookAttempt =
  | { readonly kind: 'response'; readonly status: number; readonly body: string }
  | { readonly kind: 'network'; readonly reason: string };

export type AllocationDecision =
  | { readonly kind: 'assigned'; readonly hub: string; readonly initialTwin: TwinState | undefined; readonly payload: Record<string, unknown> | undefined }
  | { readonly kind: 'failed'; readonly error: DpsErrorKind; readonly message: string }
  | { readonly kind: 'retry'; readonly reason: string };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The §2 table. Only 200 assigns (an Azure Function answers 200; other 2xx are "any other status"). A webhook that
 * does not answer at all is treated like a 5xx: retried, then failed (not documented by Microsoft; our choice).
 */
export function decideFromWebhook(attempt: WebhookAttempt, linkedHubs: readonly string[]): AllocationDecision {
  if (attempt.kind === 'network') return { kind: 'retry', reason: `webhook unreachable (${attempt.reason})` };
  const { status } = attempt;
  if (status >= 429) return { kind: 'retry', reason: `webhook answered ${status}` };
  if (status === 401) {
    return { kind: 'failed', error: 'customAllocationUnauthorizedAccess', message: 'The custom allocation webhook answered 401 Unauthorized.' };
  }
  if (status !== 200) {
    return { kind: 'failed', error: 'customAllocationFailed', message: `The custom allocation webhook answered ${status}.` };
  }
  let answer: unknown;
  try {
    answer = JSON.parse(attempt.body);
  } catch {
    return { kind: 'failed', error: 'customAllocationFailed', message: 'The custom allocation webhook answered 200 with a body that is not JSON.' };
  }
  if (!isObject(answer)) {
    return { kind: 'failed', error: 'customAllocationFailed', message: 'The custom allocation webhook answered 200 with a body that is not a JSON object.' };
  }
  const hubName = answer.iotHubHostName;
  if (typeof hubName !== 'string' || hubName.length === 0) {
    return { kind: 'failed', error: 'customAllocationIotHubNotSpecified', message: 'The custom allocation webhook answered 200 without iotHubHostName.' };
  }
  // Host names are case-insensitive; report the hub as the enrollment spells it.
  const hub = linkedHubs.find((h) => h.toLowerCase() === hubName.toLowerCase());
  if (!hub) {
    return {
      kind: 'failed',
      error: 'customAllocationIotHubNotSpecified',
      message: `The custom allocation webhook chose iotHubHostName "${hubName}", which is not one of the enrollment's linked hubs.`,
    };
  }
  const twin = answer.initialTwin;
  if (twin !== undefined && twin !== null && !isObject(twin)) {
    return { kind: 'failed', error: 'customAllocationFailed', message: 'The custom allocation webhook answered an initialTwin that is not an object.' };
  }
  const payload = answer.payload;
  if (payload !== undefined && payload !== null && !isObject(payload)) {
    return { kind: 'failed', error: 'customAllocationFailed', message: 'The custom allocation webhook answered a payload that is not a JSON object.' };
  }
  return {
    kind: 'assigned',
    hub,
    initialTwin: isObject(twin) ? (twin as TwinState) : undefined,
    payload: isObject(payload) ? payload : undefined,
  };
}

/** What a registration ends as once every retry was spent (not documented; our choice: 400207). */
export function retriesExhausted(lastReason: string, attempts: number): Extract<AllocationDecision, { kind: 'failed' }> {
  return {
    kind: 'failed',
    error: 'customAllocationFailed',
    message: `The custom allocation webhook failed on all ${attempts} attempts (last: ${lastReason}).`,
  };
}

export interface RetrySchedule {
  readonly attempts: number;
  readonly firstDelayMs: number;
  readonly incrementMs: number;
}

/** DPS's documented schedule: 10 tries, 1 s before the second, 9 s more before each following one. */
export const DPS_RETRY_SCHEDULE: RetrySchedule = { attempts: 10, firstDelayMs: 1000, incrementMs: 9000 };

/** Delay before attempt `n` (1-based); 0 before the first. */
export function retryDelayMs(schedule: RetrySchedule, n: number): number {
  return n <= 1 ? 0 : schedule.firstDelayMs + (n - 2) * schedule.incrementMs;
}

/** Hashed allocation: an even, stable spread of registration ids over the enrollment's hubs. */
export function hashedHub(registrationId: string, hubs: readonly string[]): string {
  const n = createHash('sha256').update(registrationId.toLowerCase()).digest().readUInt32BE(0);
  return hubs[n % hubs.length]!;
}

/** The deviceId DPS creates in the hub: the registration id for groups; an individual's deviceId if set. */
export function deviceIdFor(resolved: ResolvedEnrollment, registrationId: string): string {
  return resolved.kind === 'individual' ? (resolved.enrollment.deviceId ?? registrationId) : registrationId;
}

/**
 * Substatus of a (re-)assignment. First time: initialAssignment. Same hub again: the previous substatus stands.
 * Another hub: deviceDataMigrated, or deviceDataReset if the enrollment's reprovisionPolicy says not to migrate.
 */
export function substatusFor(previous: PreviousAssignment | undefined, hub: string, migrateDeviceData: boolean): Substatus {
  if (!previous) return 'initialAssignment';
  if (previous.hub.toLowerCase() === hub.toLowerCase()) return previous.substatus;
  return migrateDeviceData ? 'deviceDataMigrated' : 'deviceDataReset';
}
