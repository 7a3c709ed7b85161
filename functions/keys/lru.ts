/** What a node of a LinkedLru carries: its key and its place in the recency list. */
export interface LruNode<K> {
  readonly key: K;
  newer: this | undefined;
  older: this | undefined;
}

/**
 * A map that keeps at most `maxEntries`, dropping the least recently used: a hash map for lookup and a doubly linked
 * list for recency, so every operation is O(1). Evicting by iterating a Map from its front (`keys().next()`) is not:
 * V8 leaves a deleted entry in place until the table is rebuilt, and each eviction walks past every entry deleted
 * since, so with 200,000 entries one insert cost 90-290 µs. Nothing here ever iterates the Map.
 *
 * The caller's own objects are the list's nodes (intrusive), so an entry is one object, not a node pointing at an
 * entry. (The key cache, fleet-sized, keeps its entries in typed arrays instead: table.ts.)
 */
export class LinkedLru<K, N extends LruNode<K>> {
  private readonly nodes = new Map<K, N>();
  private newest: N | undefined;
  private oldest: N | undefined;

  constructor(readonly maxEntries: number) {
    if (!(maxEntries >= 1)) throw new RangeError('maxEntries must be at least 1');
  }

  get size(): number {
    return this.nodes.size;
  }

  /** The node, marked most recently used. */
  get(key: K): N | undefined {
    const node = this.nodes.get(key);
    if (node !== undefined) this.toNewest(node);
    return node;
  }

  /** The node, recency unchanged. */
  peek(key: K): N | undefined {
    return this.nodes.get(key);
  }

  /**
   * Stores `node` (unlinked: newer and older undefined) as most recently used, in place of any node of its key, then
   * drops the least recently used beyond `maxEntries`.
   */
  insert(node: N): void {
    const existing = this.nodes.get(node.key);
    if (existing !== undefined) this.unlink(existing);
    node.older = this.newest;
    if (this.newest !== undefined) this.newest.newer = node;
    this.newest = node;
    this.oldest ??= node;
    this.nodes.set(node.key, node);
    while (this.nodes.size > this.maxEntries && this.oldest !== undefined) this.delete(this.oldest.key);
  }

  delete(key: K): boolean {
    const node = this.nodes.get(key);
    if (node === undefined) return false;
    this.unlink(node);
    this.nodes.delete(key);
    return true;
  }

  private unlink(node: N): void {
    if (node.newer !== undefined) node.newer.older = node.older;
    else this.newest = node.older;
    if (node.older !== undefined) node.older.newer = node.newer;
    else this.oldest = node.newer;
    node.newer = undefined;
    node.older = undefined;
  }

  private toNewest(node: N): void {
    if (this.newest === node) return;
    this.unlink(node);
    node.older = this.newest;
    if (this.newest !== undefined) this.newest.newer = node;
    this.newest = node;
    this.oldest ??= node;
  }
}

interface ValueNode<K, V> {
  readonly key: K;
  value: V;
  newer: ValueNode<K, V> | undefined;
  older: ValueNode<K, V> | undefined;
}

/** A LinkedLru of plain values: get/peek/set/delete by key. */
export class LruMap<K, V> {
  private readonly list: LinkedLru<K, ValueNode<K, V>>;

  constructor(readonly maxEntries: number) {
    this.list = new LinkedLru(maxEntries);
  }

  get size(): number {
    return this.list.size;
  }

  /** The value, marked most recently used. */
  get(key: K): V | undefined {
    return this.list.get(key)?.value;
  }

  /** The value, recency unchanged. */
  peek(key: K): V | undefined {
    return this.list.peek(key)?.value;
  }

  /** Stores the value as most recently used, then drops the least recently used beyond `maxEntries`. */
  set(key: K, value: V): void {
    const existing = this.list.get(key);
    if (existing !== undefined) existing.value = value;
    else this.list.insert({ key, value, newer: undefined, older: undefined });
  }

  delete(key: K): boolean {
    return this.list.delete(key);
  }
}
