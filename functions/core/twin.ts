import { TWIN_LIMITS, type TwinTemplate } from './policy.js';
import type { EnrollmentTwin } from './request.js';

export interface InitialTwin {
  tags: Record<string, unknown>;
  properties: { desired: Record<string, unknown> };
}

export interface ProvisioningFacts {
  readonly enrollment: { readonly kind: 'individual' | 'group'; readonly id: string };
  readonly keyId?: string;
  readonly keyOrigin: string;
  readonly algorithm: string;
  readonly provisionedAt: string;
}

export interface BuiltTwin {
  readonly twin: InitialTwin;
  /** What was left out and why (`tags.<name>: <reason>`), at most MAX_DROPPED_REPORTED lines; empty when nothing was. */
  readonly dropped: string[];
}

// Store tags that describe the stored secret, not the device (CONTRACTS 1 and 2): Key Vault's own `file-encoding`,
// set when a secret is set from a file, and the digest of the stored public key.
const IGNORED_STORE_TAGS = new Set(['file-encoding', 'public-key-sha256']);
// A store tag `desired.<prop>` is a desired property (CONTRACTS 2): `.` is never part of a twin key, so the prefix
// cannot be mistaken for a tag name.
const DESIRED_PREFIX = 'desired.';
const PROVISIONING = 'provisioning';
const MAX_DROPPED_REPORTED = 10;
const MAX_NAME_REPORTED = 64;

// IoT Hub twin keys: UTF-8, case-sensitive, up to 1 KB; "allowed characters exclude UNICODE control characters
// (segments C0 and C1), '.', '$' and SP" (iot-hub-devguide-device-twins, "Tags and properties format"). Everything
// else is allowed, `:`, `@` and `+` included. DEL (U+007F), a Unicode control character between the two segments, is
// refused too: the safe reading of "control characters".
const FORBIDDEN_IN_KEY = /[\u0000-\u001f\u007f-\u009f.$ ]/;
// A lone surrogate has no UTF-8 form. The cheap test first: most text has no surrogate at all.
const ANY_SURROGATE = /[\uD800-\uDFFF]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// One UTF-16 code unit is at most 3 UTF-8 bytes, so a string of at most limit / 3 units needs no byte count.
const isWellFormed = (s: string) => !ANY_SURROGATE.test(s) || !LONE_SURROGATE.test(s);
const overBytes = (s: string, limit: number) => s.length * 3 > limit && Buffer.byteLength(s, 'utf8') > limit;
const utf8Bytes = (s: string) => Buffer.byteLength(s, 'utf8');

/** Why `name` cannot be a twin key (tag or property name), or undefined when it can. */
export function twinKeyProblem(name: string): string | undefined {
  if (name === '') return 'empty name';
  if (FORBIDDEN_IN_KEY.test(name)) return "name holds '.', '$', a space or a control character";
  if (!isWellFormed(name)) return 'name is not valid UTF-8';
  if (overBytes(name, TWIN_LIMITS.keyBytes)) return `name over ${TWIN_LIMITS.keyBytes} bytes`;
  return undefined;
}

/**
 * Why `value` cannot be a twin value, or undefined. `depth` is the nesting level `value` would sit at if it is an
 * object (1 for a top-level tag). Recursion stops at the depth limit, so hostile nesting costs nothing deep.
 */
function valueProblem(value: unknown, depth: number): string | undefined {
  switch (typeof value) {
    case 'string':
      if (!isWellFormed(value)) return 'string is not valid UTF-8';
      return overBytes(value, TWIN_LIMITS.stringBytes) ? `string over ${TWIN_LIMITS.stringBytes} bytes` : undefined;
    case 'boolean':
      return undefined;
    case 'number':
      return Number.isInteger(value) && (value < TWIN_LIMITS.minInteger || value > TWIN_LIMITS.maxInteger) ? 'integer out of range' : undefined;
    case 'object': {
      // null: IoT Hub reads it as "no value" in twin documents; our own provisioning tag uses it for an absent key id.
      if (value === null) return undefined;
      if (Array.isArray(value)) return 'arrays are not allowed';
      if (depth > TWIN_LIMITS.depth) return `nested over ${TWIN_LIMITS.depth} deep`;
      for (const key of Object.keys(value)) {
        const problem = twinKeyProblem(key) ?? valueProblem((value as Record<string, unknown>)[key], depth + 1);
        if (problem !== undefined) return problem;
      }
      return undefined;
    }
    default:
      return 'not a JSON value';
  }
}

/** Why a top-level entry (one tag or desired property) would make IoT Hub refuse a twin, or undefined. */
export function twinEntryProblem(name: string, value: unknown): string | undefined {
  return twinKeyProblem(name) ?? valueProblem(value, 1);
}

/**
 * A value's size as IoT Hub counts it: strings by length (counted here in UTF-8 bytes, never less than IoT Hub's
 * count), numbers 8, booleans 4, objects the sum of their keys and values. null is counted as 4, to be safe.
 * `bytesOf` is exact UTF-8 or the cheap upper bound (3 bytes per code unit). Called only on values `valueProblem`
 * accepted, so the recursion is bounded by the depth limit.
 */
function sizeOf(value: unknown, bytesOf: (s: string) => number): number {
  if (typeof value === 'string') return bytesOf(value);
  if (typeof value === 'number') return 8;
  if (typeof value !== 'object' || value === null) return 4;
  let size = 0;
  for (const key of Object.keys(value)) size += bytesOf(key) + sizeOf((value as Record<string, unknown>)[key], bytesOf);
  return size;
}
const upperBytes = (s: string) => s.length * 3;

class Drops {
  readonly lines: string[] = [];
  private more = 0;
  add(where: string, name: string, reason: string): void {
    if (this.lines.length >= MAX_DROPPED_REPORTED) {
      this.more += 1;
      return;
    }
    const shown = name.length > MAX_NAME_REPORTED ? `${name.slice(0, MAX_NAME_REPORTED)}…` : name;
    this.lines.push(`${where}${JSON.stringify(shown)}: ${reason}`);
  }
  list(): string[] {
    return this.more === 0 ? this.lines : [...this.lines, `and ${this.more} more`];
  }
}

const NONE = Object.freeze({ tags: Object.freeze({}), desired: Object.freeze({}) });

/** The store's tags split into twin tags and desired properties (CONTRACTS 2); names IoT Hub refuses are dropped. */
function fromStore(tags: Readonly<Record<string, string>>, drops: Drops): { tags: Record<string, string>; desired: Record<string, string> } {
  if (Object.keys(tags).length === 0) return NONE;
  const out: Array<[string, string]> = [];
  const desired: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(tags)) {
    if (IGNORED_STORE_TAGS.has(name) || typeof value !== 'string') continue;
    const isDesired = name.startsWith(DESIRED_PREFIX);
    const key = isDesired ? name.slice(DESIRED_PREFIX.length) : name;
    const problem = twinKeyProblem(key) ?? (!isDesired && key === PROVISIONING ? 'reserved for the webhook' : undefined);
    if (problem !== undefined) drops.add('store tag ', name, problem);
    else (isDesired ? desired : out).push([key, value]);
  }
  return { tags: Object.fromEntries(out), desired: Object.fromEntries(desired) };
}

type Layer = Readonly<Record<string, unknown>> | undefined;

/**
 * One section (`tags` or `properties.desired`) from its layers, lowest priority first: later layers win a name, as
 * a spread would. The usual case (every entry valid, and even counted at 3 bytes a character under the size limit)
 * is that spread, checked once. Otherwise, highest priority first, each winner is kept if IoT Hub would take it
 * (key rules, value types, depth, string size, integer range) and it still fits the section's size limit; anything
 * else is dropped and reported, so what an operator attached to this device's key wins space over the enrollment,
 * and that over the template. Copies by own members only (spread, Object.fromEntries): a `__proto__` key stays data.
 */
function section(where: string, layers: readonly [Layer, Layer, Layer, Layer?], limitBytes: number, drops: Drops): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...layers[0], ...layers[1], ...layers[2], ...layers[3] };
  let upper = 0;
  let clean = true;
  for (const name of Object.keys(merged)) {
    const value = merged[name];
    if (twinEntryProblem(name, value) !== undefined) {
      clean = false;
      break;
    }
    upper += upperBytes(name) + sizeOf(value, upperBytes);
  }
  if (clean && upper <= limitBytes) return merged;

  const rank = new Map<string, number>();
  layers.forEach((layer, i) => {
    if (layer !== undefined) for (const name of Object.keys(layer)) rank.set(name, i);
  });
  const byPriority = Object.keys(merged).sort((a, b) => (rank.get(b) ?? 0) - (rank.get(a) ?? 0));
  const kept = new Set<string>();
  let used = 0;
  for (const name of byPriority) {
    const value = merged[name];
    const problem = twinEntryProblem(name, value);
    if (problem !== undefined) {
      drops.add(where, name, problem);
      continue;
    }
    const size = utf8Bytes(name) + sizeOf(value, utf8Bytes);
    if (used + size > limitBytes) {
      drops.add(where, name, `${where.slice(0, -1)} would be over ${limitBytes / 1024} KB`);
      continue;
    }
    used += size;
    kept.add(name);
  }
  return Object.fromEntries(Object.keys(merged).filter((name) => kept.has(name)).map((name) => [name, merged[name]]));
}

/**
 * The initial twin, in layers (later ones win): the configured template; the enrollment's own initial twin, which
 * DPS would otherwise have used and which an answered twin replaces; the device's tags from the key store (a tag
 * `desired.<prop>` becomes a desired property); and a `provisioning` tag saying how the device was admitted. The
 * result always fits IoT Hub's twin limits (policy.ts TWIN_LIMITS): IoT Hub would reject the whole twin otherwise,
 * after the device was told it is assigned. What does not fit is dropped and listed in `dropped`.
 */
export function buildInitialTwin(
  template: TwinTemplate,
  enrollmentTwin: EnrollmentTwin | undefined,
  storeTags: Readonly<Record<string, string>>,
  facts: ProvisioningFacts,
): BuiltTwin {
  const drops = new Drops();
  const store = fromStore(storeTags, drops);
  const provisioning = {
    [PROVISIONING]: {
      enrollmentType: facts.enrollment.kind,
      enrollmentId: facts.enrollment.id,
      keyId: facts.keyId ?? null,
      keySource: facts.keyOrigin,
      algorithm: facts.algorithm,
      provisionedAt: facts.provisionedAt,
    },
  };
  const tags = section('tags.', [template.tags, enrollmentTwin?.tags, store.tags, provisioning], TWIN_LIMITS.tagsBytes, drops);
  const desired = section('properties.desired.', [template.properties?.desired, enrollmentTwin?.desired, store.desired], TWIN_LIMITS.desiredBytes, drops);
  return { twin: { tags, properties: { desired } }, dropped: drops.list() };
}
