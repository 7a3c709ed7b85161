/**
 * The local IoT Hub's state and rules, transport-free: device identities DPS created (id, keys, twin), device SAS
 * checks, twin reads and patches, and the telemetry received. The MQTT server (servers/hub-mqtt.ts) translates the
 * wire into these calls. Protocol facts and their sources are in docs/local-dps.md ("The local IoT Hub").
 *
 * Bounded on purpose (issue 13 item 9): one device per registration (DPS's own bound applies), each twin section
 * within IoT Hub's size limits, telemetry kept as a count plus a short ring of recent messages with bodies cut at
 * TELEMETRY_BODY_KEEP_BYTES.
 */
import { timingSafeEqual } from 'node:crypto';
import type { TwinState } from '../protocol/enrollments.js';
import type { HubAssignment } from '../protocol/service.js';
import { MAX_SAS_LIFETIME_SECONDS, parseSas, signSas, type SasError } from '../protocol/sas.js';

/** IoT Hub twin limits (iot-hub-devguide-device-twins, ../shared/azure-cli-facts.md §4.3). */
export const TWIN_LIMITS = { tagsBytes: 8 * 1024, desiredBytes: 32 * 1024, reportedBytes: 32 * 1024, depth: 10 } as const;
/** Device-to-cloud message size: 256 KB (iot-mqtt-connect-to-iot-hub, "256-kb max message size"). */
export const MAX_D2C_MESSAGE_BYTES = 256 * 1024;
/** How much of each telemetry body is kept for inspection (the rest is counted, not stored). */
export const TELEMETRY_BODY_KEEP_BYTES = 4 * 1024;
/** Most recent telemetry messages kept across all devices. */
export const TELEMETRY_RING = 1000;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

export interface TelemetryMessage {
  readonly hub: string;
  readonly deviceId: string;
  /** Application properties and system properties (`$.ct`, `$.ce`, `$.mid`, ...) from the topic's property bag. */
  readonly properties: Readonly<Record<string, string | null>>;
  /** The body as UTF-8 text, cut at TELEMETRY_BODY_KEEP_BYTES. */
  readonly body: string;
  readonly bodyBytes: number;
  readonly truncated: boolean;
  readonly receivedAtUtc: string;
}

export interface TwinView {
  readonly tags: JsonObject;
  readonly properties: {
    readonly desired: JsonObject & { $version: number };
    readonly reported: JsonObject & { $version: number };
  };
}

interface DeviceState {
  readonly hub: string;
  readonly deviceId: string;
  keys: readonly string[];
  tags: JsonObject;
  desired: JsonObject;
  desiredVersion: number;
  reported: JsonObject;
  reportedVersion: number;
  telemetryCount: number;
  lastTelemetry: TelemetryMessage | undefined;
  connected: boolean;
}

export interface HubDeviceView {
  readonly hub: string;
  readonly deviceId: string;
  readonly connected: boolean;
  readonly twin: TwinView;
  readonly telemetryCount: number;
  readonly lastTelemetry: TelemetryMessage | undefined;
}

export type HubAuthFailure = 'unknown_hub' | 'unknown_device' | 'malformed' | 'wrong_resource' | 'policy_token' | 'expired' | 'expiry_too_far' | 'bad_signature';

export class HubAuthError extends Error {
  constructor(readonly reason: HubAuthFailure, message: string) {
    super(message);
    this.name = 'HubAuthError';
  }
}

/** A refusal of a twin operation, answered on `$iothub/twin/res/{status}`. */
export class TwinOperationError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'TwinOperationError';
  }
}

export interface DesiredUpdate {
  readonly hub: string;
  readonly deviceId: string;
  /** The patch as sent to the device: the changed members and `$version`. */
  readonly patch: JsonObject & { $version: number };
}

export interface HubRegistryEvents {
  /** A desired-properties patch to push to the device if it is connected and subscribed. */
  onDesiredUpdate?: (update: DesiredUpdate) => void;
  /** The device was removed (moved to another hub): its connection must be closed. */
  onDeviceRemoved?: (hub: string, deviceId: string) => void;
  log?: (line: string) => void;
  now?: () => Date;
}

const key = (hub: string, deviceId: string): string => `${hub.toLowerCase()}/${deviceId}`;

export class HubRegistry {
  private readonly hubs: Set<string>;
  private readonly devices = new Map<string, DeviceState>();
  private readonly recent: TelemetryMessage[] = [];
  private readonly now: () => Date;

  /** `hubNames`: every hub DPS links (from the enrollments); the stand-in answers for each, and only those. */
  constructor(hubNames: Iterable<string>, private readonly events: HubRegistryEvents = {}) {
    this.hubs = new Set([...hubNames].map((h) => h.toLowerCase()));
    this.now = events.now ?? (() => new Date());
  }

  hubNames(): string[] {
    return [...this.hubs];
  }

  isHub(name: string): boolean {
    return this.hubs.has(name.toLowerCase());
  }

  /**
   * Applies a DPS assignment, following the enrollment's reprovision policy as DPS documents it
   * (concepts-device-reprovision; ../shared/azure-cli-facts.md §4.2):
   * - first assignment: the device is created with the initial twin (the webhook's, else the enrollment's);
   * - never re-provision (updateHubAssignment false): the device stays as it is;
   * - the same hub again: the twin stays as the device and the back end left it, whatever the policy;
   * - another hub, migrate data: the twin moves with the device;
   * - another hub, reset to initial config: the device starts there from the initial twin (a returned initialTwin
   *   applies on re-provisioning only when the hub changes under reset, §4.2).
   * A device that changes hubs is removed from the old one ("the device registration with the initial IoT hub will be
   * removed"), which closes its connection there.
   */
  provision(a: HubAssignment): void {
    if (!this.isHub(a.hub)) throw new TypeError(`hub ${a.hub} is not a linked hub of this local DPS`);
    const prev = a.previous ? this.devices.get(key(a.previous.hub, a.previous.deviceId)) : undefined;
    const target = key(a.hub, a.deviceId);
    const initial = twinSections(a.initialTwin);
    const fresh = (): DeviceState => ({
      hub: a.hub.toLowerCase(),
      deviceId: a.deviceId,
      keys: [...a.keys],
      tags: initial.tags,
      desired: initial.desired,
      desiredVersion: 1,
      reported: {},
      reportedVersion: 1,
      telemetryCount: 0,
      lastTelemetry: undefined,
      connected: false,
    });

    if (!prev) {
      const existing = this.devices.get(target);
      if (existing) {
        // Known to the hub but not through a previous assignment here (e.g. an id shared by two enrollments).
        existing.keys = [...a.keys];
        return;
      }
      this.devices.set(target, fresh());
      this.log(`hub ${a.hub}: device ${a.deviceId} created with the initial twin`);
      return;
    }
    prev.keys = [...a.keys];
    if (!a.reprovision.updateHubAssignment) return;
    if (key(prev.hub, prev.deviceId) === target) return;
    const moved = fresh();
    if (a.reprovision.migrateDeviceData) {
      moved.tags = prev.tags;
      moved.desired = prev.desired;
      moved.desiredVersion = prev.desiredVersion;
      moved.reported = prev.reported;
      moved.reportedVersion = prev.reportedVersion;
    }
    this.devices.delete(key(prev.hub, prev.deviceId));
    this.events.onDeviceRemoved?.(prev.hub, prev.deviceId);
    this.devices.set(target, moved);
    this.log(`hub ${a.hub}: device ${a.deviceId} moved from ${prev.hub} (${a.reprovision.migrateDeviceData ? 'twin migrated' : 'twin reset'})`);
  }

  /**
   * Checks a device's CONNECT: the hub is one DPS links, the device exists there, and the password is a device SAS
   * `sr={hub}/devices/{deviceId}` (URL-encoded or not, compared case-insensitively), signed with one of the device's
   * keys, not expired and not more than a day ahead (the local DPS's bound, sas.ts). A token carrying `skn` is a hub
   * policy token, which this stand-in has none of.
   */
  authenticate(hub: string, deviceId: string, password: string | undefined): void {
    if (!this.isHub(hub)) throw new HubAuthError('unknown_hub', `no linked hub named ${hub}`);
    const device = this.devices.get(key(hub, deviceId));
    if (!device) throw new HubAuthError('unknown_device', `no device ${deviceId} on ${hub}`);
    let sas;
    try {
      sas = parseSas(password);
    } catch (err) {
      throw new HubAuthError('malformed', (err as SasError).message);
    }
    if (sas.resource !== `${hub}/devices/${deviceId}`.toLowerCase()) {
      throw new HubAuthError('wrong_resource', 'SharedAccessSignature sr does not name this device on this hub');
    }
    if (sas.skn !== undefined) throw new HubAuthError('policy_token', 'shared access policy tokens are not supported; use the device key');
    const nowSeconds = Math.floor(this.now().getTime() / 1000);
    if (sas.se <= nowSeconds) throw new HubAuthError('expired', 'SharedAccessSignature has expired');
    if (sas.se > nowSeconds + MAX_SAS_LIFETIME_SECONDS) throw new HubAuthError('expiry_too_far', 'SharedAccessSignature se is too far ahead');
    let ok = false;
    for (const k of device.keys) {
      const expected = signSas(k, sas.srRaw, sas.se);
      if (expected.length === sas.sig.length && timingSafeEqual(expected, sas.sig)) ok = true;
    }
    if (!ok) throw new HubAuthError('bad_signature', 'SharedAccessSignature signature does not match the device key');
  }

  setConnected(hub: string, deviceId: string, connected: boolean): void {
    const d = this.devices.get(key(hub, deviceId));
    if (d) d.connected = connected;
  }

  /** `$iothub/twin/GET`: the twin's properties section, each with its `$version` (the documented response body). */
  twinProperties(hub: string, deviceId: string): { desired: JsonObject; reported: JsonObject } {
    const d = this.mustGet(hub, deviceId);
    return { desired: { ...d.desired, $version: d.desiredVersion }, reported: { ...d.reported, $version: d.reportedVersion } };
  }

  /**
   * `$iothub/twin/PATCH/properties/reported`: merges the patch (a member set to null is deleted) and returns the new
   * version. Malformed JSON or a patch that would break IoT Hub's twin limits is refused with 400, changing nothing.
   */
  patchReported(hub: string, deviceId: string, body: string): number {
    const d = this.mustGet(hub, deviceId);
    const patch = parseObject(body);
    if (!patch) throw new TwinOperationError(400, 'the reported properties patch must be a JSON object');
    const next = mergePatch(d.reported, patch);
    checkSection(next, TWIN_LIMITS.reportedBytes, 'properties.reported');
    d.reported = next;
    d.reportedVersion += 1;
    return d.reportedVersion;
  }

  /** The service side's twin update (what `az iot hub device-twin update --desired` does): merge and notify. */
  updateDesired(hub: string, deviceId: string, patch: Record<string, unknown>): number {
    const d = this.mustGet(hub, deviceId);
    const p = parseObject(JSON.stringify(patch));
    if (!p) throw new TypeError('a desired properties patch must be a JSON object');
    const next = mergePatch(d.desired, p);
    checkSection(next, TWIN_LIMITS.desiredBytes, 'properties.desired');
    d.desired = next;
    d.desiredVersion += 1;
    this.events.onDesiredUpdate?.({ hub: d.hub, deviceId, patch: { ...p, $version: d.desiredVersion } });
    return d.desiredVersion;
  }

  /** `devices/{id}/messages/events/{property-bag}`. */
  recordTelemetry(hub: string, deviceId: string, properties: Record<string, string | null>, payload: Buffer): TelemetryMessage {
    const d = this.mustGet(hub, deviceId);
    const truncated = payload.length > TELEMETRY_BODY_KEEP_BYTES;
    const msg: TelemetryMessage = {
      hub: d.hub,
      deviceId,
      properties,
      body: payload.subarray(0, TELEMETRY_BODY_KEEP_BYTES).toString('utf8'),
      bodyBytes: payload.length,
      truncated,
      receivedAtUtc: this.now().toISOString(),
    };
    d.telemetryCount += 1;
    d.lastTelemetry = msg;
    this.recent.push(msg);
    if (this.recent.length > TELEMETRY_RING) this.recent.shift();
    return msg;
  }

  device(hub: string, deviceId: string): HubDeviceView | undefined {
    const d = this.devices.get(key(hub, deviceId));
    return d ? view(d) : undefined;
  }

  devicesList(): HubDeviceView[] {
    return [...this.devices.values()].map(view);
  }

  /** The most recent telemetry (at most TELEMETRY_RING messages), optionally of one device. */
  telemetry(filter?: { hub?: string; deviceId?: string }): TelemetryMessage[] {
    return this.recent.filter(
      (m) => (filter?.hub === undefined || m.hub === filter.hub.toLowerCase()) && (filter?.deviceId === undefined || m.deviceId === filter.deviceId),
    );
  }

  private mustGet(hub: string, deviceId: string): DeviceState {
    const d = this.devices.get(key(hub, deviceId));
    if (!d) throw new TwinOperationError(404, `no device ${deviceId} on ${hub}`);
    return d;
  }

  private log(line: string): void {
    this.events.log?.(line);
  }
}

function view(d: DeviceState): HubDeviceView {
  return {
    hub: d.hub,
    deviceId: d.deviceId,
    connected: d.connected,
    twin: {
      tags: structuredClone(d.tags),
      properties: {
        desired: { ...structuredClone(d.desired), $version: d.desiredVersion },
        reported: { ...structuredClone(d.reported), $version: d.reportedVersion },
      },
    },
    telemetryCount: d.telemetryCount,
    lastTelemetry: d.lastTelemetry,
  };
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseObject(text: string): JsonObject | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The twin sections DPS hands the hub: tags and desired properties, `$`-members (metadata) left out. */
function twinSections(t: TwinState | undefined): { tags: JsonObject; desired: JsonObject } {
  const tags = isObject(t?.tags) ? (structuredClone(t.tags) as JsonObject) : {};
  const desiredIn = t?.properties?.desired;
  const desired = isObject(desiredIn) ? (structuredClone(desiredIn) as JsonObject) : {};
  for (const k of Object.keys(desired)) if (k.startsWith('$')) delete desired[k];
  return { tags, desired };
}

/** JSON merge patch as twins use it: objects merge member by member, null deletes, anything else replaces. */
function mergePatch(target: JsonObject, patch: JsonObject): JsonObject {
  const out: JsonObject = structuredClone(target);
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$')) continue; // $version and metadata are the hub's, not the writer's
    if (v === null) delete out[k];
    else if (isObject(v)) out[k] = mergePatch(isObject(out[k]) ? (out[k] as JsonObject) : {}, v);
    else out[k] = structuredClone(v);
  }
  return out;
}

/** Size (UTF-8 of keys and string values, 8 per number, 4 per boolean) and depth, as the twin limits define them. */
function checkSection(section: JsonObject, maxBytes: number, name: string): void {
  let size = 0;
  const walk = (v: Json, depth: number): void => {
    if (typeof v === 'string') size += Buffer.byteLength(v);
    else if (typeof v === 'number') size += 8;
    else if (typeof v === 'boolean') size += 4;
    else if (Array.isArray(v)) throw new TwinOperationError(400, `${name} may not hold arrays`);
    else if (v !== null) {
      // Objects nest at most 10 deep below the section ("tags.one.two…ten.property" is the documented deepest).
      if (depth > TWIN_LIMITS.depth) throw new TwinOperationError(400, `${name} is nested deeper than ${TWIN_LIMITS.depth} levels`);
      for (const [k, child] of Object.entries(v)) {
        size += Buffer.byteLength(k);
        walk(child, depth + 1);
      }
    }
  };
  walk(section, 0);
  if (size > maxBytes) throw new TwinOperationError(400, `${name} would be ${size} bytes, over IoT Hub's ${maxBytes}`);
}

