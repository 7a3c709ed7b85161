/**
 * The enrollments file: DPS's own enrollment JSON shape (what `az iot dps enrollment show` prints), restricted to
 * what the local DPS supports (symmetric-key attestation; custom, hashed or static allocation). Validation collects
 * every problem and names each by its field path, so one run shows the user everything to fix.
 */
import { isBase64 } from './sas.js';

export type ProvisioningStatus = 'enabled' | 'disabled';
export type AllocationPolicy = 'custom' | 'hashed' | 'static';

export interface SymmetricKeyAttestation {
  type: 'symmetricKey';
  symmetricKey: { primaryKey: string; secondaryKey?: string };
}

export interface CustomAllocationDefinition {
  webhookUrl: string;
  apiVersion: string;
}

export interface ReprovisionPolicy {
  updateHubAssignment?: boolean;
  migrateDeviceData?: boolean;
}

export interface TwinState {
  tags?: Record<string, unknown>;
  properties?: { desired?: Record<string, unknown> };
  [extra: string]: unknown;
}

interface EnrollmentCommon {
  attestation: SymmetricKeyAttestation;
  provisioningStatus?: ProvisioningStatus;
  allocationPolicy?: AllocationPolicy;
  customAllocationDefinition?: CustomAllocationDefinition;
  iotHubs: string[];
  initialTwin?: TwinState;
  reprovisionPolicy?: ReprovisionPolicy;
  capabilities?: { iotEdge: boolean };
  etag?: string;
  createdDateTimeUtc?: string;
  lastUpdatedDateTimeUtc?: string;
}

export interface IndividualEnrollment extends EnrollmentCommon {
  registrationId: string;
  deviceId?: string;
}

export interface EnrollmentGroup extends EnrollmentCommon {
  enrollmentGroupId: string;
}

export interface EnrollmentsFile {
  individualEnrollments?: IndividualEnrollment[];
  enrollmentGroups?: EnrollmentGroup[];
}

export class EnrollmentsError extends Error {
  constructor(readonly problems: readonly string[], source?: string) {
    super(`${source ? `${source}: ` : ''}invalid enrollments:\n  - ${problems.join('\n  - ')}`);
    this.name = 'EnrollmentsError';
  }
}

/** DPS registration ids: up to 128 chars, alphanumeric plus - . _ :, ending in an alphanumeric or '-'. */
const REGISTRATION_ID = /^[A-Za-z0-9\-._:]{0,127}[A-Za-z0-9-]$/;
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

export function isValidRegistrationId(id: unknown): id is string {
  return typeof id === 'string' && REGISTRATION_ID.test(id);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Validates a parsed enrollments document and returns it typed. Throws EnrollmentsError listing every problem.
 * Keys may be any base64 DPS accepts; the webhook URL must be loopback (the local DPS never calls off the machine).
 */
export function validateEnrollments(doc: unknown, source?: string): EnrollmentsFile {
  const problems: string[] = [];
  const bad = (path: string, msg: string): void => void problems.push(`${path} ${msg}`);
  if (!isObject(doc)) throw new EnrollmentsError(['the document must be a JSON object'], source);

  for (const key of Object.keys(doc)) {
    if (key !== 'individualEnrollments' && key !== 'enrollmentGroups') {
      bad(key, 'is not a known field (expected individualEnrollments, enrollmentGroups)');
    }
  }
  const lists = {
    individualEnrollments: doc.individualEnrollments ?? [],
    enrollmentGroups: doc.enrollmentGroups ?? [],
  };
  for (const [name, list] of Object.entries(lists)) {
    if (!Array.isArray(list)) bad(name, 'must be an array');
  }
  const individuals = Array.isArray(lists.individualEnrollments) ? lists.individualEnrollments : [];
  const groups = Array.isArray(lists.enrollmentGroups) ? lists.enrollmentGroups : [];
  if (problems.length === 0 && individuals.length + groups.length === 0) {
    bad('individualEnrollments', 'and enrollmentGroups are both empty: no device could register');
  }

  const seenIds = new Map<string, string>();
  individuals.forEach((e: unknown, i) => {
    const path = `individualEnrollments[${i}]`;
    if (!isObject(e)) return bad(path, 'must be an object');
    if (!isValidRegistrationId(e.registrationId)) {
      bad(`${path}.registrationId`, 'must be 1-128 characters of A-Z a-z 0-9 - . _ :, ending in a letter, digit or -');
    } else {
      const lower = e.registrationId.toLowerCase();
      const prev = seenIds.get(lower);
      if (prev) bad(`${path}.registrationId`, `repeats ${prev} (registration ids are case-insensitive)`);
      else seenIds.set(lower, `${path}.registrationId`);
    }
    if (e.deviceId !== undefined && (typeof e.deviceId !== 'string' || e.deviceId.length === 0 || e.deviceId.length > 128)) {
      bad(`${path}.deviceId`, 'must be a non-empty string of at most 128 characters');
    }
    validateCommon(e, path, bad);
  });

  const seenGroups = new Map<string, string>();
  groups.forEach((g: unknown, i) => {
    const path = `enrollmentGroups[${i}]`;
    if (!isObject(g)) return bad(path, 'must be an object');
    if (!isValidRegistrationId(g.enrollmentGroupId)) {
      bad(`${path}.enrollmentGroupId`, 'must be 1-128 characters of A-Z a-z 0-9 - . _ :, ending in a letter, digit or -');
    } else {
      const lower = g.enrollmentGroupId.toLowerCase();
      const prev = seenGroups.get(lower);
      if (prev) bad(`${path}.enrollmentGroupId`, `repeats ${prev}`);
      else seenGroups.set(lower, `${path}.enrollmentGroupId`);
    }
    if (g.deviceId !== undefined) bad(`${path}.deviceId`, 'is not allowed on a group (a group device\'s id is its registration id)');
    validateCommon(g, path, bad);
  });

  if (problems.length > 0) throw new EnrollmentsError(problems, source);
  return doc as EnrollmentsFile;
}

function validateCommon(e: Record<string, unknown>, path: string, bad: (p: string, m: string) => void): void {
  const att = e.attestation;
  if (!isObject(att)) {
    bad(`${path}.attestation`, 'must be an object { "type": "symmetricKey", "symmetricKey": {...} }');
  } else if (att.type !== 'symmetricKey') {
    bad(`${path}.attestation.type`, 'must be "symmetricKey" (the local DPS supports no other attestation)');
  } else if (!isObject(att.symmetricKey)) {
    bad(`${path}.attestation.symmetricKey`, 'must be an object { "primaryKey", "secondaryKey" }');
  } else {
    const sk = att.symmetricKey;
    if (typeof sk.primaryKey !== 'string' || !isBase64(sk.primaryKey)) {
      bad(`${path}.attestation.symmetricKey.primaryKey`, 'must be base64');
    }
    if (sk.secondaryKey !== undefined && (typeof sk.secondaryKey !== 'string' || !isBase64(sk.secondaryKey))) {
      bad(`${path}.attestation.symmetricKey.secondaryKey`, 'must be base64');
    }
  }

  if (e.provisioningStatus !== undefined && e.provisioningStatus !== 'enabled' && e.provisioningStatus !== 'disabled') {
    bad(`${path}.provisioningStatus`, 'must be "enabled" or "disabled"');
  }

  const hubs = e.iotHubs;
  if (!Array.isArray(hubs) || hubs.length === 0) {
    bad(`${path}.iotHubs`, 'must be a non-empty array of IoT hub host names');
  } else {
    hubs.forEach((h, j) => {
      if (typeof h !== 'string' || !HOSTNAME.test(h)) bad(`${path}.iotHubs[${j}]`, 'must be a host name like "hub-eu.azure-devices.net"');
    });
  }

  const policy = e.allocationPolicy ?? 'hashed';
  if (policy !== 'custom' && policy !== 'hashed' && policy !== 'static') {
    bad(`${path}.allocationPolicy`, 'must be "custom", "hashed" or "static"');
  }
  if (policy === 'static' && Array.isArray(hubs) && hubs.length !== 1) {
    bad(`${path}.iotHubs`, 'must hold exactly one hub when allocationPolicy is "static"');
  }
  const cad = e.customAllocationDefinition;
  if (policy === 'custom') {
    if (!isObject(cad)) {
      bad(`${path}.customAllocationDefinition`, 'must be an object { "webhookUrl", "apiVersion" } when allocationPolicy is "custom"');
    } else {
      checkWebhookUrl(cad.webhookUrl, `${path}.customAllocationDefinition.webhookUrl`, bad);
      if (typeof cad.apiVersion !== 'string' || cad.apiVersion.length === 0) {
        bad(`${path}.customAllocationDefinition.apiVersion`, 'must be a string such as "2021-10-01"');
      }
    }
  } else if (cad !== undefined) {
    bad(`${path}.customAllocationDefinition`, 'is only allowed when allocationPolicy is "custom"');
  }

  if (e.initialTwin !== undefined && e.initialTwin !== null) {
    if (!isObject(e.initialTwin)) bad(`${path}.initialTwin`, 'must be an object { "tags", "properties": { "desired" } }');
    else {
      const t = e.initialTwin;
      if (t.tags !== undefined && !isObject(t.tags)) bad(`${path}.initialTwin.tags`, 'must be an object');
      if (t.properties !== undefined) {
        if (!isObject(t.properties)) bad(`${path}.initialTwin.properties`, 'must be an object');
        else if (t.properties.desired !== undefined && !isObject(t.properties.desired)) {
          bad(`${path}.initialTwin.properties.desired`, 'must be an object');
        }
      }
    }
  }

  const rp = e.reprovisionPolicy;
  if (rp !== undefined) {
    if (!isObject(rp)) bad(`${path}.reprovisionPolicy`, 'must be an object');
    else {
      for (const k of ['updateHubAssignment', 'migrateDeviceData'] as const) {
        if (rp[k] !== undefined && typeof rp[k] !== 'boolean') bad(`${path}.reprovisionPolicy.${k}`, 'must be a boolean');
      }
    }
  }
  const caps = e.capabilities;
  if (caps !== undefined && (!isObject(caps) || typeof caps.iotEdge !== 'boolean')) {
    bad(`${path}.capabilities`, 'must be an object { "iotEdge": boolean }');
  }
  for (const k of ['etag', 'createdDateTimeUtc', 'lastUpdatedDateTimeUtc'] as const) {
    if (e[k] !== undefined && typeof e[k] !== 'string') bad(`${path}.${k}`, 'must be a string');
  }
}

function checkWebhookUrl(value: unknown, path: string, bad: (p: string, m: string) => void): void {
  if (typeof value !== 'string') return bad(path, 'must be a URL string');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return bad(path, 'must be an absolute http:// or https:// URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return bad(path, 'must be an http:// or https:// URL');
  if (!LOOPBACK_HOSTS.has(url.hostname)) {
    bad(path, 'must point at a loopback host (localhost, 127.0.0.1 or [::1]): the local DPS never calls off this machine');
  }
}

/** What the local DPS resolved a registration id to. */
export type ResolvedEnrollment =
  | { readonly kind: 'individual'; readonly enrollment: IndividualEnrollment }
  | { readonly kind: 'group'; readonly enrollment: EnrollmentGroup };

export function enrollmentId(r: ResolvedEnrollment): string {
  return r.kind === 'individual' ? r.enrollment.registrationId : r.enrollment.enrollmentGroupId;
}

export function findIndividual(file: EnrollmentsFile, registrationId: string): IndividualEnrollment | undefined {
  const lower = registrationId.toLowerCase();
  return file.individualEnrollments?.find((e) => e.registrationId.toLowerCase() === lower);
}

export function effectiveStatus(e: EnrollmentCommon): ProvisioningStatus {
  return e.provisioningStatus ?? 'enabled';
}

/** Hides the query (the function key `?code=`) the way DPS shows webhook URLs: `https://host/path?****`. */
export function maskWebhookUrl(value: string): string {
  const q = value.indexOf('?');
  return q < 0 ? value : `${value.slice(0, q)}?****`;
}
