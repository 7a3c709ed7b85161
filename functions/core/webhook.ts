import type { CryptoKey } from 'jose';
import { observeChecks, type CheckObserver, type CheckProgress } from './checks.js';
import { pickHub } from './hub.js';
import type { TokenPolicy, TwinTemplate } from './policy.js';
import type { DeviceKeys, ReplayStore, ResolvedKeySet, VerificationKey } from './ports.js';
import { REASONS, WebhookError, type ReasonCode } from './reasons.js';
import { parseAllocationRequest, type AllocationRequest } from './request.js';
import { inspectToken, verifyToken, type TokenHeader, type VerifiedToken } from './token.js';
import { buildInitialTwin, type InitialTwin } from './twin.js';

export interface WebhookInput {
  /** The body, or a reader that enforces the size limit (its refusal is answered like any other). */
  readonly body: string | (() => Promise<string>);
  readonly contentType?: string;
  /** Told each check of this decision as it passes or fails (`fleet explain`); absent in the webhook's own requests. */
  readonly onCheck?: CheckObserver;
}

/** One structured line per decision. Never the token, key material, or function key. */
export interface DecisionLog {
  readonly registrationId?: string;
  readonly outcome: 'assigned' | 'refused' | 'malformed' | 'retry' | 'error';
  readonly code: ReasonCode;
  readonly status: number;
  readonly enrollment?: string;
  readonly keyId?: string;
  readonly keySource?: string;
  readonly hub?: string;
  /** For internal_error only: the error's class name, never its message. */
  readonly error?: string;
  /** For webhook_misconfigured: the setting that stopped the start. */
  readonly setting?: string;
  /** Twin entries left out because IoT Hub would refuse them (twin.ts), when any were. */
  readonly twinDropped?: readonly string[];
  readonly durationMs: number;
}

export interface AssignedBody {
  iotHubHostName: string;
  initialTwin: InitialTwin;
  payload: { keyId: string | null; algorithm: string; serverTime: string };
}

export interface WebhookAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: AssignedBody | { code: ReasonCode; message: string };
  readonly log: DecisionLog;
}

export interface WebhookDeps {
  readonly policy: TokenPolicy;
  readonly preferredHub?: string;
  readonly twinTemplate: TwinTemplate;
  readonly keys: DeviceKeys;
  /** The imported form of a stored key (a bounded cache in production). */
  readonly importKey: (key: VerificationKey) => CryptoKey | Promise<CryptoKey>;
  readonly replay?: ReplayStore;
  /** Milliseconds since the epoch; handed in so tests can freeze time. */
  readonly now: () => number;
}

const RETRY_AFTER_SECONDS = '5';

function outcomeOf(status: number): DecisionLog['outcome'] {
  if (status === 200) return 'assigned';
  if (status === 403) return 'refused';
  if (status < 429) return 'malformed';
  return status === 500 ? 'error' : 'retry';
}

/** Verifies the token against the device's keys, re-reading them once when the token names a kid they lack. */
async function verifyWithRotation(
  token: string,
  header: TokenHeader,
  keySet: ResolvedKeySet,
  deps: WebhookDeps,
  registrationId: string,
  progress: CheckProgress,
): Promise<{ verified: VerifiedToken; keySet: ResolvedKeySet }> {
  try {
    return { verified: await verifyToken(token, header, keySet.keys, deps.policy, registrationId, deps.now(), deps.importKey, progress), keySet };
  } catch (error) {
    if (!(error instanceof WebhookError && error.code === 'token_key_unknown' && header.kid !== undefined)) throw error;
    const refreshed = await deps.keys.refresh(keySet.name);
    // Within the cooldown the cache hands back the same keys: nothing new to try.
    if (refreshed === undefined || refreshed.keys === keySet.keys || !refreshed.enabled) throw error;
    return { verified: await verifyToken(token, header, refreshed.keys, deps.policy, registrationId, deps.now(), deps.importKey, progress), keySet: refreshed };
  }
}

async function admit(request: AllocationRequest, deps: WebhookDeps, log: Record<string, unknown>, progress: CheckProgress): Promise<AssignedBody> {
  const header = inspectToken(request.token, request.payloadKind, deps.policy);
  progress.pass('token-form');
  const lookup = request.enrollment.kind === 'group'
    ? { registrationId: request.registrationId, enrollmentGroupId: request.enrollment.enrollmentGroupId }
    : { registrationId: request.registrationId };
  const found = await deps.keys.find(lookup);
  if (found === undefined) throw new WebhookError('device_key_not_found', 'no public key is on file for this registration');
  log.keySource = found.origin;
  progress.pass('key-found', found.origin);
  if (!found.enabled) throw new WebhookError('device_key_disabled', "this device's key is disabled");
  progress.pass('key-enabled');

  const { verified, keySet } = await verifyWithRotation(request.token as string, header, found, deps, request.registrationId, progress);
  log.keySource = keySet.origin;
  if (verified.key.kid !== undefined) log.keyId = verified.key.kid;

  // requireJti too: a decision run without the replay store (explain) still judges the jti as the webhook would.
  if ((deps.replay !== undefined || deps.policy.requireJti) && verified.jti === undefined) {
    throw new WebhookError('token_jti_missing', 'replay protection is on: the token needs a "jti"');
  }
  progress.pass('jti');
  if (deps.replay === undefined) {
    progress.skip('replay', deps.policy.requireJti ? 'no replay store in this decision: the jti was not recorded' : 'REPLAY_STORE is off');
  } else {
    const jti = verified.jti as string;
    // Remembered for as long as any verifier would still accept the token: exp plus the clock skew it tolerates.
    const first = await deps.replay.claim({
      registrationId: request.registrationId.toLowerCase(),
      jti,
      acceptableUntilMs: (verified.exp + deps.policy.clockSkewSeconds) * 1000,
      verifiedAtMs: verified.verifiedAtMs,
    });
    if (!first) throw new WebhookError('token_replayed', 'this token was already used');
    progress.pass('replay');
  }

  const { hub, why } = pickHub({
    registrationId: request.registrationId,
    linkedHubs: request.linkedHubs,
    ...(request.currentHub !== undefined && { currentHub: request.currentHub }),
    ...(deps.preferredHub !== undefined && { preferredHub: deps.preferredHub }),
  });
  log.hub = hub;
  progress.pass('hub', why);

  const serverTime = new Date(deps.now()).toISOString();
  const enrollment = request.enrollment.kind === 'group'
    ? { kind: 'group' as const, id: request.enrollment.enrollmentGroupId }
    : { kind: 'individual' as const, id: request.enrollment.registrationId };
  const { twin, dropped } = buildInitialTwin(deps.twinTemplate, request.enrollmentTwin, keySet.tags, {
    enrollment,
    ...(verified.key.kid !== undefined && { keyId: verified.key.kid }),
    keyOrigin: keySet.origin,
    algorithm: verified.key.alg,
    provisionedAt: serverTime,
  });
  if (dropped.length > 0) log.twinDropped = dropped;
  progress.pass('twin');
  return {
    iotHubHostName: hub,
    initialTwin: twin,
    payload: { keyId: verified.key.kid ?? null, algorithm: verified.key.alg, serverTime },
  };
}

/**
 * The webhook's whole decision, from request body to answer: parse, inspect the token, find the key, verify, bind,
 * check replay, pick the hub, build the twin. Refusals are coded `WebhookError`s; anything else is a bug and
 * answers 500 without detail.
 */
export async function decide(input: WebhookInput, deps: WebhookDeps): Promise<WebhookAnswer> {
  const started = performance.now();
  const log: Record<string, unknown> = {};
  const progress = observeChecks(input.onCheck);
  let status: number;
  let code: ReasonCode;
  let body: WebhookAnswer['body'];
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' };
  try {
    const text = typeof input.body === 'string' ? input.body : await input.body();
    const request = parseAllocationRequest(text, input.contentType);
    log.registrationId = request.registrationId;
    log.enrollment = request.enrollment.kind === 'group' ? `group:${request.enrollment.enrollmentGroupId}` : 'individual';
    progress.pass('request');
    body = await admit(request, deps, log, progress);
    code = 'assigned';
    status = 200;
  } catch (error) {
    const known = error instanceof WebhookError;
    code = known ? error.code : 'internal_error';
    // The name only: an unexpected error's message could quote its input.
    if (!known) log.error = error instanceof Error ? error.name : typeof error;
    status = REASONS[code].status;
    body = { code, message: known ? error.message : REASONS.internal_error.summary };
    progress.fail(code, body.message);
    if (status >= 429) headers['retry-after'] = RETRY_AFTER_SECONDS;
  }
  // Completed in place rather than copied: the record is this decision's own, and the keys come out in the same order.
  log.outcome = outcomeOf(status);
  log.code = code;
  log.status = status;
  log.durationMs = Math.round((performance.now() - started) * 100) / 100;
  return { status, headers, body, log: log as unknown as DecisionLog };
}
