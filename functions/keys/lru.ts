interface LruNode<K, V> {
  readonly key: K;
  value: V;
  newer: LruNode<K, V> | undefined;
  older: LruNode<K, V> | undefined;
}

/**
 * A map that keeps at most `maxEntries`, dropping the least recently used: a hash map for lookup and a doubly linked
 * list for recency, so every operation is O(1). Evicting by iterating a Map from its front (`keys().next()`) is not:
 * V8 leaves a deleted entry in place until the table is rebuilt, and each eviction walks past every entry deleted
 * since, so with 200,000 entries one insert cost 90-290 µs. Nothing here ever iterates the Map. (The key cache,
 * fleet-sized, keeps its entries in typed arrays instead: table.ts.)
 */
export class LruMap<K, V> {
  private readonly nodes = new Map<K, LruNode<K, V>>();
  private newest: LruNode<K, V> | undefined;
  private oldest: LruNode<K, V> | undefined;

  constructor(readonly maxEntries: number) {
    if (!(maxEntries >= 1)) throw new RangeError('maxEntries must be at least 1');
  }

  get size(): number {
    return this.nodes.size;
  }

  /** The value, marked most recently used. */
  get(key: K): V | undefined {
    const node = this.nodes.get(key);
    if (node === undefined) return undefined;
    if (this.newest !== node) {
      this.unlink(node);
      this.linkNewest(node);
    }
    return node.value;
  }

  /** The value, recency unchanged. */
  peek(key: K): V | undefined {
    return this.nodes.get(key)?.value;
  }

  /** Stores the value as most recently used, then drops the least recently used beyond `maxEntries`. */
  set(key: K, value: V): void {
    const existing = this.nodes.get(key);
    if (existing !== undefined) {
      existing.value = value;
      if (this.newest !== existing) {
        this.unlink(existing);
        this.linkNewest(existing);
      }
      return;
    }
    const node: LruNode<K, V> = { key, value, newer: undefined, older: undefined };
    this.linkNewest(node);
    this.nodes.set(key, node);
    while (this.nodes.size > this.maxEntries && this.oldest !== undefined) this.delete(this.oldest.key);
  }

  delete(key: K): boolean {
    const node = this.nodes.get(key);
    if (node === undefined) return false;
    this.unlink(node);
    this.nodes.delete(key);
    return true;
  }

  private linkNewest(node: LruNode<K, V>): void {
    node.older = this.newest;
    if (this.newest !== undefined) this.newest.newer = node;
    this.newest = node;
    this.oldest ??= node;
  }

  private unlink(node: LruNode<K, V>): void {
    if (node.newer !== undefined) node.newer.older = node.older;
    else this.newest = node.older;
    if (node.older !== undefined) node.older.newer = node.newer;
    else this.oldest = node.newer;
    node.newer = undefined;
    node.older = undefined;
  }
}
