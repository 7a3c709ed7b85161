import { P256Key } from './p256.js';
import { NO_TAGS, type StoredKeySet } from './types.js';

const NONE = -1;
const POINT_BYTES = 64;
const FIRST_CAPACITY = 1024;

/**
 * The key cache's entries by name: at most `maxEntries`, the least recently used dropped first, every operation
 * O(1), and laid out for a fleet. Nearly every device's entry is one enabled P-256 key without tags or kid: such an
 * entry is kept as its 64-byte point in one shared buffer, its times and recency links in typed arrays, and only its
 * name and origin as strings, so a cached device costs V8's heap about 150 bytes (a Map entry and two strings; 151
 * measured in bench section 6) and 88 bytes outside it, where objects per device cost 450 bytes of heap. Fewer
 * long-lived heap objects also mean less for every major GC to mark. Any other entry (several keys, a kid, tags,
 * disabled, RSA...) keeps its StoredKeySet.
 *
 * A slot is a row of every column. Slots are handed out in order as the table grows; once it is full, the oldest
 * entry's slot is reused for the next new name.
 */
export class KeyTable {
  private readonly slots = new Map<string, number>();
  private readonly names: string[] = [];
  /** A compact entry's origin, another entry's key set, or undefined: nothing is stored under the name. */
  private readonly values: Array<string | StoredKeySet | undefined> = [];
  private points = Buffer.alloc(0);
  /** readAt, freshUntil (the cache's clock) */
  private times = new Float64Array(0);
  /** newer, older; NONE at the ends */
  private links = new Int32Array(0);
  private newest = NONE;
  private oldest = NONE;

  constructor(readonly maxEntries: number) {
    if (!(maxEntries >= 1)) throw new RangeError('maxEntries must be at least 1');
  }

  get size(): number {
    return this.slots.size;
  }

  /** The slot of `name`, or NONE; its recency unchanged. */
  find(name: string): number {
    return this.slots.get(name) ?? NONE;
  }

  /** The slot of `name`, or NONE; marked most recently used. */
  use(name: string): number {
    const slot = this.slots.get(name);
    if (slot === undefined) return NONE;
    if (slot !== this.newest) {
      this.unlink(slot);
      this.linkNewest(slot);
    }
    return slot;
  }

  readAt(slot: number): number {
    return this.times[2 * slot]!;
  }

  freshUntil(slot: number): number {
    return this.times[2 * slot + 1]!;
  }

  setFreshUntil(slot: number, at: number): void {
    this.times[2 * slot + 1] = at;
  }

  /** What is stored under the slot's name: for a compact entry, a key set made of it (a new object each call). */
  value(slot: number): StoredKeySet | undefined {
    const value = this.values[slot];
    if (typeof value !== 'string') return value;
    const at = slot * POINT_BYTES;
    return { keys: [new P256Key(this.points.toString('latin1', at, at + POINT_BYTES))], enabled: true, tags: NO_TAGS, origin: value };
  }

  /** Stores `value` under `name` as most recently used, dropping the least recently used beyond `maxEntries`. */
  set(name: string, value: StoredKeySet | undefined, readAt: number, freshUntil: number): void {
    let slot = this.slots.get(name);
    if (slot !== undefined) this.unlink(slot);
    else {
      slot = this.freeSlot();
      const own = flat(name);
      this.names[slot] = own;
      this.slots.set(own, slot);
    }
    this.linkNewest(slot);
    this.times[2 * slot] = readAt;
    this.times[2 * slot + 1] = freshUntil;
    const key = value?.keys.length === 1 && value.enabled && value.tags === NO_TAGS ? value.keys[0] : undefined;
    if (key instanceof P256Key) {
      this.points.write(key.point, slot * POINT_BYTES, POINT_BYTES, 'latin1');
      this.values[slot] = flat(value!.origin);
    } else this.values[slot] = value;
  }

  /** A slot for a new name: the next unused one, or the least recently used entry's, which is dropped. */
  private freeSlot(): number {
    const used = this.names.length;
    if (used < this.maxEntries) {
      if (used === this.times.length / 2) this.grow(Math.min(this.maxEntries, Math.max(FIRST_CAPACITY, used * 2)));
      return used;
    }
    const slot = this.oldest;
    this.unlink(slot);
    this.slots.delete(this.names[slot]!);
    return slot;
  }

  private grow(capacity: number): void {
    const points = Buffer.alloc(capacity * POINT_BYTES);
    this.points.copy(points);
    this.points = points;
    const times = new Float64Array(capacity * 2);
    times.set(this.times);
    this.times = times;
    const links = new Int32Array(capacity * 2);
    links.set(this.links);
    this.links = links;
  }

  private linkNewest(slot: number): void {
    this.links[2 * slot] = NONE;
    this.links[2 * slot + 1] = this.newest;
    if (this.newest !== NONE) this.links[2 * this.newest] = slot;
    this.newest = slot;
    if (this.oldest === NONE) this.oldest = slot;
  }

  private unlink(slot: number): void {
    const newer = this.links[2 * slot]!;
    const older = this.links[2 * slot + 1]!;
    if (newer !== NONE) this.links[2 * newer + 1] = older;
    else this.newest = older;
    if (older !== NONE) this.links[2 * older] = newer;
    else this.oldest = newer;
  }
}

/**
 * The string as one flat copy. A name or origin is usually built by concatenation (`device:${id}`, `${secret}/${version}`),
 * which V8 keeps as a pair of references to its parts, and a part cut out of a longer string keeps all of that
 * string alive: cached for hours, 100,000 of them cost twice their length. Left as it is when a UTF-8 round trip
 * would change it (lone surrogates), which no registration id or secret name holds.
 */
function flat(text: string): string {
  const copy = Buffer.from(text, 'utf8').toString('utf8');
  return copy === text ? copy : text;
}
