/**
 * The registration service behind both device APIs (HTTPS and MQTT): authenticate the SAS, resolve the enrollment,
 * run the allocation (webhook with retries), keep operations and records. Transport-free: it takes and returns plain
 * data; the webhook call, the clock and sleeping are handed in.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import {
  buildAllocationRequest,
  decideFromWebhook,
  deviceIdFor,
  hashedHub,
  retriesExhausted,
  retryDelayMs,
  substatusFor,
  type AllocationDecision,
  type AllocationRequest,
  type PreviousAssignment,
  type RetrySchedule,
  type Substatus,
  type WebhookAttempt,
} from './allocation.js';
import {
  effectiveStatus,
  enrollmentId,
  findIndividual,
  isValidRegistrationId,
  type EnrollmentsFile,
  type ResolvedEnrollment,
  type TwinState,
} from './enrollments.js';
import { DPS_ERRORS, errorBody, type DpsErrorKind } from './errors.js';
import { deriveDeviceKey, parseSas, SasError, verifySas } from './sas.js';

export type RegistrationStatus = 'assigning' | 'assigned' | 'failed' | 'disabled';
export type DeviceTransport = 'https' | 'mqtt';

export interface RegistrationRecord {
  readonly operationId: string;
  readonly registrationId: string;
  readonly transport: DeviceTransport;
  readonly enrollment: { readonly kind: 'individual' | 'group'; readonly id: string };
  readonly status: RegistrationStatus;
  readonly substatus?: Substatus;
  readonly assignedHub?: string;
  readonly deviceId?: string;
  /** The twin DPS would apply in the hub: the webhook's, else the enrollment's. */
  readonly initialTwin?: TwinState;
  /** The webhook's payload, handed to the device as registrationState.payload. */
  readonly payload?: Record<string, unknown>;
  /** What the device sent as payload (it may hold a JWT: kept in memory only, never logged). */
  readonly devicePayload?: unknown;
  /** The AllocationRequest last POSTed to the webhook (custom allocation only). */
  readonly allocationRequest?: AllocationRequest;
  readonly errorCode?: number;
  readonly errorMessage?: string;
  readonly webhookAttempts: number;
  /** HTTP statuses the webhook answered, in order ('network' when it did not answer). */
  readonly webhookStatuses: readonly (number | 'network')[];
  readonly createdDateTimeUtc: string;
  readonly lastUpdatedDateTimeUtc: string;
  readonly etag: string;
  readonly durationMs?: number;
}

type MutableRecord = { -readonly [K in keyof RegistrationRecord]: RegistrationRecord[K] } & { webhookStatuses: (number | 'network')[] };

export interface DpsAnswer {
  readonly status: number;
  readonly body: unknown;
  /** Seconds the device should wait before polling (header / topic parameter). */
  readonly retryAfterSeconds?: number;
}

export interface DeviceRequest {
  readonly transport: DeviceTransport;
  readonly idScope: string;
  readonly registrationId: string;
  /** The SharedAccessSignature (HTTPS Authorization header, MQTT password). */
  readonly sas: string | undefined;
}

/** Passed as the body when the device's body did not parse: authentication still comes first. */
export const INVALID_JSON: unique symbol = Symbol('invalid JSON');

export type PostWebhook = (url: string, body: AllocationRequest, timeoutMs: number, signal: AbortSignal) => Promise<WebhookAttempt>;

/** What the hub stand-in needs to know about an assignment (issue 14 item 2). */
export interface HubAssignment {
  readonly registrationId: string;
  readonly hub: string;
  readonly deviceId: string;
  /** The keys the device may authenticate to its hub with: the enrollment's, or those derived from the group's. */
  readonly keys: readonly string[];
  /** The webhook's twin, else the enrollment's. */
  readonly initialTwin: TwinState | undefined;
  /** Where this registration was assigned before, if this DPS assigned it already. */
  readonly previous: PreviousAssignment | undefined;
  readonly reprovision: { readonly updateHubAssignment: boolean; readonly migrateDeviceData: boolean };
}

/** Defaults of the service's own bounds (issue 13 item 9); docs/local-dps.md states them. */
export const DEFAULT_MAX_REGISTRATIONS = 10_000;
export const DEFAULT_MAX_RECORDS = 256;

export interface RegistrationServiceOptions {
  readonly idScope: string;
  readonly enrollments: EnrollmentsFile;
  readonly retry: RetrySchedule;
  readonly webhookTimeoutMs: number;
  readonly retryAfterSeconds: number;
  readonly postWebhook: PostWebhook;
  readonly log: (line: string) => void;
  readonly now?: () => Date;
  /** Called once per assignment, before the device can learn of it (so its hub knows it when it connects). */
  readonly onAssigned?: (assignment: HubAssignment) => void;
  /** Most distinct registration ids remembered; a new one beyond this is answered 429. Default 10,000. */
  readonly maxRegistrations?: number;
  /** Most registration records (and their operations) kept for inspection; the oldest finished go first. Default 256. */
  readonly maxRecords?: number;
}

export class RegistrationService {
  private readonly operations = new Map<string, MutableRecord>();
  private readonly records: MutableRecord[] = [];
  private readonly assignments = new Map<string, PreviousAssignment>();
  private readonly inFlight = new Set<Promise<void>>();
  /** Lower-cased ids being assigned for the first time: they count against maxRegistrations too. */
  private readonly pendingNew = new Set<string>();
  private readonly abort = new AbortController();
  private readonly loadedAtUtc: string;
  private readonly now: () => Date;
  private readonly maxRegistrations: number;
  private readonly maxRecords: number;

  constructor(private readonly opts: RegistrationServiceOptions) {
    this.now = opts.now ?? (() => new Date());
    this.loadedAtUtc = this.now().toISOString();
    this.maxRegistrations = opts.maxRegistrations ?? DEFAULT_MAX_REGISTRATIONS;
    this.maxRecords = opts.maxRecords ?? DEFAULT_MAX_RECORDS;
    // Whole seconds on both wires: the Python SDK parses the MQTT retry-after with int(), and a fraction makes its
    // register hang forever (issue 14 item 6); HTTP's Retry-After is delay-seconds, an integer (RFC 9110 §10.2.3).
    if (!Number.isInteger(opts.retryAfterSeconds) || opts.retryAfterSeconds < 1 || opts.retryAfterSeconds > 3600) {
      throw new TypeError(`retryAfterSeconds must be a whole number of seconds from 1 to 3600, got ${opts.retryAfterSeconds}`);
    }
    for (const [name, v] of [['maxRegistrations', this.maxRegistrations], ['maxRecords', this.maxRecords]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new TypeError(`${name} must be a whole number >= 1, got ${v}`);
    }
  }

  /** Operations held (for tests of the bounds): at most maxRecords plus those still assigning. */
  get operationCount(): number {
    return this.operations.size;
  }

  /** Distinct registration ids remembered (assigned, or being assigned). */
  get registrationCount(): number {
    return this.assignments.size + this.pendingNew.size;
  }

  registrations(): readonly RegistrationRecord[] {
    return this.records.map((r) => ({ ...r, webhookStatuses: [...r.webhookStatuses] }));
  }

  /** PUT .../register (HTTPS) or $dps/registrations/PUT/iotdps-register (MQTT). */
  register(req: DeviceRequest, body: unknown): DpsAnswer {
    const started = Date.now();
    const auth = this.authenticate(req);
    if ('answer' in auth) return auth.answer;
    const { resolved, registrationId } = auth;

    if (body === INVALID_JSON) return this.error('badRequest', 'The request body is not valid JSON.');
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      return this.error('badRequest', 'The request body must be a JSON object { "registrationId", "payload"? }.');
    }
    const b = body as Record<string, unknown>;
    if (b.registrationId !== undefined && (typeof b.registrationId !== 'string' || b.registrationId.toLowerCase() !== registrationId.toLowerCase())) {
      return this.error('badRequest', 'The body\'s registrationId does not match the registration in the request.');
    }

    // A registration still being assigned answers with its own operation (the device retried its PUT).
    const pending = this.records.find((r) => r.status === 'assigning' && r.registrationId.toLowerCase() === registrationId.toLowerCase());
    if (pending) return this.assigningAnswer(pending.operationId);

    // A group key admits any registration id: without a bound, one key holder grows this process without limit.
    const lower = registrationId.toLowerCase();
    const known = this.assignments.has(lower) || this.pendingNew.has(lower);
    if (!known && this.registrationCount >= this.maxRegistrations) {
      this.opts.log(`registration ${registrationId} refused: ${this.maxRegistrations} registrations already (maxRegistrations) via ${req.transport}`);
      return this.error('throttled', `This local DPS holds ${this.maxRegistrations} registrations, its limit; no new registration id is accepted.`);
    }
    if (!known) this.pendingNew.add(lower);

    const nowIso = this.now().toISOString();
    const rec: MutableRecord = {
      operationId: `4.${randomBytes(8).toString('hex')}.${randomUUID()}`,
      registrationId,
      transport: req.transport,
      enrollment: { kind: resolved.kind, id: enrollmentId(resolved) },
      status: 'assigning',
      webhookAttempts: 0,
      webhookStatuses: [],
      createdDateTimeUtc: nowIso,
      lastUpdatedDateTimeUtc: nowIso,
      etag: `"${randomUUID()}"`,
    };
    if (b.payload !== undefined && b.payload !== null) rec.devicePayload = b.payload;
    this.operations.set(rec.operationId, rec);
    this.records.push(rec);
    this.pruneRecords();

    if (effectiveStatus(resolved.enrollment) === 'disabled') {
      this.finish(rec, started, { status: 'disabled' });
    } else {
      const run = this.allocate(rec, resolved, started).catch((err: unknown) => {
        // A bug, not a device problem: fail the registration rather than leave it assigning forever.
        this.finish(rec, started, { status: 'failed', error: 'internal', message: `Internal error: ${(err as Error).message}` });
      });
      this.inFlight.add(run);
      void run.finally(() => this.inFlight.delete(run));
    }
    return this.assigningAnswer(rec.operationId);
  }

  /** GET .../operations/{operationId} (HTTPS) or $dps/registrations/GET/iotdps-get-operationstatus (MQTT). */
  operationStatus(req: DeviceRequest, operationId: string): DpsAnswer {
    const auth = this.authenticate(req);
    if ('answer' in auth) return auth.answer;
    const rec = this.operations.get(operationId);
    if (!rec || rec.registrationId.toLowerCase() !== auth.registrationId.toLowerCase()) {
      return this.error('operationNotFound', 'No such registration operation for this registration.');
    }
    if (rec.status === 'assigning') return this.assigningAnswer(rec.operationId);
    return { status: 200, body: { operationId: rec.operationId, status: rec.status, registrationState: registrationState(rec) } };
  }

  /** Stops retries and waits for running allocations to notice. */
  async close(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled([...this.inFlight]);
  }

  /** Drops the oldest records beyond maxRecords, with their operations (a record still assigning keeps its operation). */
  private pruneRecords(): void {
    while (this.records.length > this.maxRecords) {
      const old = this.records.shift()!;
      if (old.status !== 'assigning') this.operations.delete(old.operationId);
    }
  }

  private assigningAnswer(operationId: string): DpsAnswer {
    return { status: 202, body: { operationId, status: 'assigning' }, retryAfterSeconds: this.opts.retryAfterSeconds };
  }

  private error(kind: DpsErrorKind, message: string): DpsAnswer {
    const answer = { status: DPS_ERRORS[kind].status, body: errorBody(kind, message, this.now()) };
    return kind === 'throttled' ? { ...answer, retryAfterSeconds: this.opts.retryAfterSeconds } : answer;
  }

  /**
   * Resolves the enrollment whose key signed the SAS. An individual enrollment for the id wins over groups (as in DPS)
   * and is the only candidate then; otherwise every group is tried with its derived device keys. Unknown id and
   * wrong key answer the same 401, as DPS does, so the answer does not reveal which ids are enrolled.
   */
  private authenticate(req: DeviceRequest): { resolved: ResolvedEnrollment; registrationId: string } | { answer: DpsAnswer } {
    const id = req.registrationId;
    const reject = (why: string): { answer: DpsAnswer } => {
      this.opts.log(`registration ${isValidRegistrationId(id) ? id : '<invalid id>'} rejected errorCode=${DPS_ERRORS.unauthorized.errorCode} (${why}) via ${req.transport}`);
      return { answer: this.error('unauthorized', 'Unauthorized') };
    };
    if (req.idScope.toLowerCase() !== this.opts.idScope.toLowerCase()) return reject('unknown id scope');
    if (!isValidRegistrationId(id)) {
      return { answer: this.error('badRequest', 'The registration id is not valid (1-128 characters of A-Z a-z 0-9 - . _ :).') };
    }
    let sas;
    try {
      sas = parseSas(req.sas);
    } catch (err) {
      return reject((err as Error).message);
    }
    const nowSeconds = Math.floor(this.now().getTime() / 1000);
    const check = (keys: string[]): SasError | undefined => {
      try {
        verifySas({ sas, idScope: this.opts.idScope, registrationId: id, keys, nowSeconds });
        return undefined;
      } catch (err) {
        if (err instanceof SasError) return err;
        throw err;
      }
    };
    const keysOf = (sk: { primaryKey: string; secondaryKey?: string }): string[] =>
      sk.secondaryKey ? [sk.primaryKey, sk.secondaryKey] : [sk.primaryKey];

    const individual = findIndividual(this.opts.enrollments, id);
    if (individual) {
      const failure = check(keysOf(individual.attestation.symmetricKey));
      return failure ? reject(failure.message) : { resolved: { kind: 'individual', enrollment: individual }, registrationId: id };
    }
    let last: SasError | undefined;
    for (const group of this.opts.enrollments.enrollmentGroups ?? []) {
      const sk = group.attestation.symmetricKey;
      const failure = check(keysOf(sk).map((k) => deriveDeviceKey(k, id)));
      if (!failure) return { resolved: { kind: 'group', enrollment: group }, registrationId: id };
      last = failure;
      // Resource and expiry do not depend on the key: no group can match.
      if (failure.reason !== 'bad_signature') break;
    }
    return reject(last ? last.message : 'no enrollment for this registration id');
  }

  private async allocate(rec: MutableRecord, resolved: ResolvedEnrollment, started: number): Promise<void> {
    const e = resolved.enrollment;
    const key = rec.registrationId.toLowerCase();
    const previous = this.assignments.get(key);
    const policy = e.allocationPolicy ?? 'hashed';
    const migrate = e.reprovisionPolicy?.migrateDeviceData ?? true;
    const deviceId = deviceIdFor(resolved, rec.registrationId);

    const hubSide = { resolved, previous, migrate };

    // reprovisionPolicy.updateHubAssignment=false ("never re-provision"): a provisioned device stays on its hub. The
    // webhook is still called, as DPS calls it on every registration whatever the policy (azure-cli-facts §4.2), so
    // it can still refuse the device; the hub it picks is not used.
    const stay = previous && e.reprovisionPolicy?.updateHubAssignment === false ? previous : undefined;
    const placed = (hub: string): { hub: string; substatus: Substatus } =>
      stay ? { hub: stay.hub, substatus: stay.substatus } : { hub, substatus: substatusFor(previous, hub, migrate) };
    if (policy !== 'custom') {
      const where = placed(policy === 'static' ? e.iotHubs[0]! : hashedHub(rec.registrationId, e.iotHubs));
      return this.finish(rec, started, { status: 'assigned', ...where, deviceId, initialTwin: e.initialTwin, payload: undefined, hubSide });
    }

    const request = buildAllocationRequest({
      resolved,
      registrationId: rec.registrationId,
      devicePayload: rec.devicePayload,
      previous,
      meta: { loadedAtUtc: this.loadedAtUtc },
    });
    rec.allocationRequest = request;
    const url = e.customAllocationDefinition!.webhookUrl;
    const { retry } = this.opts;
    let decision: AllocationDecision | undefined;
    for (let n = 1; n <= retry.attempts; n++) {
      const delay = retryDelayMs(retry, n);
      if (delay > 0 && !(await sleep(delay, this.abort.signal))) return; // closed while waiting
      const attempt = await this.opts.postWebhook(url, request, this.opts.webhookTimeoutMs, this.abort.signal);
      if (this.abort.signal.aborted) return;
      rec.webhookAttempts = n;
      rec.webhookStatuses.push(attempt.kind === 'response' ? attempt.status : 'network');
      decision = decideFromWebhook(attempt, request.linkedHubs);
      if (decision.kind !== 'retry') break;
      if (n === retry.attempts) decision = retriesExhausted(decision.reason, n);
    }
    if (!decision || decision.kind === 'retry') decision = retriesExhausted('no attempt made', 0);
    if (decision.kind === 'failed') {
      return this.finish(rec, started, { status: 'failed', error: decision.error, message: decision.message });
    }
    this.finish(rec, started, {
      status: 'assigned',
      ...placed(decision.hub),
      deviceId,
      initialTwin: decision.initialTwin ?? e.initialTwin,
      payload: decision.payload,
      hubSide,
    });
  }

  private finish(
    rec: MutableRecord,
    started: number,
    outcome:
      | { status: 'disabled' }
      | { status: 'failed'; error: DpsErrorKind; message: string }
      | {
          status: 'assigned';
          hub: string;
          deviceId: string;
          substatus: Substatus;
          initialTwin: TwinState | undefined;
          payload: Record<string, unknown> | undefined;
          hubSide: { resolved: ResolvedEnrollment; previous: PreviousAssignment | undefined; migrate: boolean };
        },
  ): void {
    const lower = rec.registrationId.toLowerCase();
    this.pendingNew.delete(lower);
    if (!this.records.includes(rec)) this.operations.delete(rec.operationId);
    if (outcome.status === 'assigned') {
      // The hub learns of the device before the device learns of its hub, as with DPS.
      const { resolved, previous, migrate } = outcome.hubSide;
      const sk = resolved.enrollment.attestation.symmetricKey;
      const enrollmentKeys = sk.secondaryKey ? [sk.primaryKey, sk.secondaryKey] : [sk.primaryKey];
      this.opts.onAssigned?.({
        registrationId: rec.registrationId,
        hub: outcome.hub,
        deviceId: outcome.deviceId,
        keys: resolved.kind === 'group' ? enrollmentKeys.map((k) => deriveDeviceKey(k, rec.registrationId)) : enrollmentKeys,
        initialTwin: outcome.initialTwin,
        previous,
        reprovision: { updateHubAssignment: resolved.enrollment.reprovisionPolicy?.updateHubAssignment ?? true, migrateDeviceData: migrate },
      });
    }
    rec.status = outcome.status;
    rec.lastUpdatedDateTimeUtc = this.now().toISOString();
    rec.durationMs = Date.now() - started;
    let detail: string;
    if (outcome.status === 'assigned') {
      rec.assignedHub = outcome.hub;
      rec.deviceId = outcome.deviceId;
      rec.substatus = outcome.substatus;
      if (outcome.initialTwin) rec.initialTwin = outcome.initialTwin;
      if (outcome.payload) rec.payload = outcome.payload;
      this.assignments.set(rec.registrationId.toLowerCase(), { hub: outcome.hub, deviceId: outcome.deviceId, substatus: outcome.substatus });
      detail = `hub=${outcome.hub} deviceId=${outcome.deviceId} substatus=${outcome.substatus}`;
    } else if (outcome.status === 'failed') {
      rec.errorCode = DPS_ERRORS[outcome.error].errorCode;
      rec.errorMessage = outcome.message;
      detail = `errorCode=${rec.errorCode}`;
    } else {
      detail = `enrollment ${rec.enrollment.kind} ${rec.enrollment.id} is disabled`;
    }
    const statuses = rec.webhookStatuses.length ? ` [${rec.webhookStatuses.join(',')}]` : '';
    this.opts.log(
      `registration ${rec.registrationId} ${rec.status} ${detail} webhookAttempts=${rec.webhookAttempts}${statuses} ${rec.durationMs}ms via ${rec.transport}`,
    );
  }
}

/** registrationState as DPS returns it to the device (dps-protocol §3). */
export function registrationState(rec: RegistrationRecord): Record<string, unknown> {
  const s: Record<string, unknown> = {
    registrationId: rec.registrationId,
    createdDateTimeUtc: rec.createdDateTimeUtc,
  };
  if (rec.status === 'assigned') {
    s.assignedHub = rec.assignedHub;
    s.deviceId = rec.deviceId;
  }
  s.status = rec.status;
  if (rec.substatus) s.substatus = rec.substatus;
  if (rec.errorCode !== undefined) {
    s.errorCode = rec.errorCode;
    s.errorMessage = rec.errorMessage;
  }
  s.lastUpdatedDateTimeUtc = rec.lastUpdatedDateTimeUtc;
  s.etag = rec.etag;
  if (rec.payload) s.payload = rec.payload;
  return s;
}

/** Resolves true after `ms`, or false at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

