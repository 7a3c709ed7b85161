import { isHostName } from './policy.js';
import { WebhookError } from './reasons.js';

/** The parts of DPS's AllocationRequest (dps-protocol §1) that the webhook decides on. */
export interface AllocationRequest {
  readonly registrationId: string;
  readonly enrollment:
    | { readonly kind: 'individual'; readonly registrationId: string }
    | { readonly kind: 'group'; readonly enrollmentGroupId: string };
  readonly linkedHubs: readonly string[];
  /** Present on re-registration. */
  readonly currentHub?: string;
  /** The enrollment's own initial twin, which DPS would use if the webhook answered none. */
  readonly enrollmentTwin?: EnrollmentTwin;
  /** `deviceRuntimeContext.payload.jwt`, still unchecked; undefined when the device sent no payload or no jwt. */
  readonly token: unknown;
  /** Whether the device sent a payload at all, and whether it was an object, for a precise refusal. */
  readonly payloadKind: 'absent' | 'object' | 'other';
}

export interface EnrollmentTwin {
  readonly tags?: Readonly<Record<string, unknown>>;
  readonly desired?: Readonly<Record<string, unknown>>;
}

/** DPS registration ids: up to 128 of [A-Za-z0-9-._:], ending in an alphanumeric or '-'. */
const REGISTRATION_ID = /^[A-Za-z0-9._:-]{0,127}[A-Za-z0-9-]$/;
const MAX_LINKED_HUBS = 64;

export function isRegistrationId(value: string): boolean {
  return REGISTRATION_ID.test(value);
}

const UPPER = /[A-Z]/;
const UPPERS = /[A-Z]/g;

/**
 * Registration ids are ASCII and case-insensitive: fold ASCII only, so a look-alike (U+212A KELVIN SIGN lower-cases
 * to "k") never compares equal to an ASCII id. Most ids are already lower case: those are returned as they are.
 */
export function asciiLower(s: string): string {
  return UPPER.test(s) ? s.replace(UPPERS, (c) => String.fromCharCode(c.charCodeAt(0) + 32)) : s;
}

type Json = Record<string, unknown>;

function invalid(message: string): WebhookError {
  return new WebhookError('request_invalid', message);
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function objectAt(parent: Json, key: string, path: string): Json {
  const value = Object.hasOwn(parent, key) ? parent[key] : undefined;
  if (!isObject(value)) throw invalid(`${path} must be an object`);
  return value;
}

function idAt(parent: Json, key: string, path: string): string {
  const value = Object.hasOwn(parent, key) ? parent[key] : undefined;
  if (typeof value !== 'string') throw invalid(`${path} must be a string`);
  if (!isRegistrationId(value)) {
    throw invalid(`${path} must be 1-128 of A-Z a-z 0-9 - . _ : ending in a letter, digit or -`);
  }
  return value;
}

/** Parses and validates a request body. Throws `WebhookError` (400/413) naming what is wrong; never echoes input. */
export function parseAllocationRequest(body: string, contentType: string | undefined): AllocationRequest {
  // DPS does not document its request headers; an absent content type is taken as JSON, a different one refused.
  if (contentType !== undefined && contentType !== '' && !/^application\/json\s*(;|$)/i.test(contentType)) {
    throw new WebhookError('request_content_type', 'content-type must be application/json');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new WebhookError('request_not_json', 'the request body is not valid JSON');
  }
  return validateAllocationRequest(parsed);
}

export function validateAllocationRequest(value: unknown): AllocationRequest {
  if (!isObject(value)) throw invalid('the request body must be a JSON object');

  const hasIndividual = Object.hasOwn(value, 'individualEnrollment') && value.individualEnrollment != null;
  const hasGroup = Object.hasOwn(value, 'enrollmentGroup') && value.enrollmentGroup != null;
  if (hasIndividual === hasGroup) throw invalid('exactly one of individualEnrollment and enrollmentGroup must be present');

  const context = objectAt(value, 'deviceRuntimeContext', 'deviceRuntimeContext');
  const registrationId = idAt(context, 'registrationId', 'deviceRuntimeContext.registrationId');

  let enrollment: AllocationRequest['enrollment'];
  const enrollmentObject = objectAt(value, hasIndividual ? 'individualEnrollment' : 'enrollmentGroup', hasIndividual ? 'individualEnrollment' : 'enrollmentGroup');
  if (hasIndividual) {
    const individual = enrollmentObject;
    const enrolledId = idAt(individual, 'registrationId', 'individualEnrollment.registrationId');
    if (enrolledId.toLowerCase() !== registrationId.toLowerCase()) {
      throw invalid('individualEnrollment.registrationId must equal deviceRuntimeContext.registrationId');
    }
    enrollment = { kind: 'individual', registrationId: enrolledId };
  } else {
    enrollment = { kind: 'group', enrollmentGroupId: idAt(enrollmentObject, 'enrollmentGroupId', 'enrollmentGroup.enrollmentGroupId') };
  }

  const hubs = Object.hasOwn(value, 'linkedHubs') ? value.linkedHubs : undefined;
  if (!Array.isArray(hubs) || hubs.length === 0) throw invalid('linkedHubs must be a non-empty array');
  if (hubs.length > MAX_LINKED_HUBS) throw invalid(`linkedHubs must have at most ${MAX_LINKED_HUBS} entries`);
  hubs.forEach((hub, i) => {
    if (typeof hub !== 'string' || !isHostName(hub)) throw invalid(`linkedHubs[${i}] must be a host name`);
  });

  let currentHub: string | undefined;
  if (Object.hasOwn(context, 'currentIotHubHostName') && context.currentIotHubHostName != null) {
    const hub = context.currentIotHubHostName;
    if (typeof hub !== 'string' || !isHostName(hub)) throw invalid('deviceRuntimeContext.currentIotHubHostName must be a host name');
    currentHub = hub;
  }

  const payload = Object.hasOwn(context, 'payload') ? context.payload : undefined;
  const payloadKind = payload == null ? 'absent' : isObject(payload) ? 'object' : 'other';
  const token = isObject(payload) && Object.hasOwn(payload, 'jwt') ? payload.jwt : undefined;

  const enrollmentTwin = twinOf(enrollmentObject);
  return {
    registrationId,
    enrollment,
    ...(enrollmentTwin !== undefined && { enrollmentTwin }),
    linkedHubs: hubs as string[],
    ...(currentHub !== undefined && { currentHub }),
    token,
    payloadKind,
  };
}

/** The tags and desired properties of an enrollment's initialTwin; anything else in it is DPS's to keep. */
function twinOf(enrollment: Json): EnrollmentTwin | undefined {
  const twin = Object.hasOwn(enrollment, 'initialTwin') ? enrollment.initialTwin : undefined;
  if (!isObject(twin)) return undefined;
  const tags = Object.hasOwn(twin, 'tags') && isObject(twin.tags) ? twin.tags : undefined;
  const properties = Object.hasOwn(twin, 'properties') && isObject(twin.properties) ? twin.properties : undefined;
  const desired = properties !== undefined && Object.hasOwn(properties, 'desired') && isObject(properties.desired) ? properties.desired : undefined;
  if (tags === undefined && desired === undefined) return undefined;
  return { ...(tags !== undefined && { tags }), ...(desired !== undefined && { desired }) };
}
