import type { LookupAddress, LookupOptions } from 'node:dns';
import { Socket } from 'node:net';

/**
 * Refuses (and records) every outbound TCP connection to anything but loopback, for the life of the guard: an IMDS
 * probe (169.254.169.254) or a login.microsoftonline.com call fails at once instead of leaving the machine.
 */
export function guardLoopback(): { readonly blocked: readonly string[]; restore(): void } {
  const blocked: string[] = [];
  const original = Socket.prototype.connect;
  Socket.prototype.connect = function guardedConnect(this: Socket, ...args: unknown[]) {
    const first = args[0];
    const options = (Array.isArray(first) ? first[0] : first) as { host?: string; path?: string } | number | string;
    const host = typeof options === 'object' && options !== null ? options.host : typeof args[1] === 'string' ? args[1] : undefined;
    const isPipe = typeof options === 'object' && options !== null && typeof options.path === 'string';
    if (!isPipe && host !== undefined && !/^(localhost|127\.\d+\.\d+\.\d+|::1|\[::1\])$/i.test(host)) {
      blocked.push(host);
      process.nextTick(() => this.destroy(new Error(`test guard: connection to ${host} refused (loopback only)`)));
      return this;
    }
    return (original as (...a: unknown[]) => Socket).apply(this, args);
  } as typeof Socket.prototype.connect;
  return {
    blocked,
    restore: () => {
      Socket.prototype.connect = original;
    },
  };
}

/**
 * Answers node:dns lookups (`lookup` and `promises.lookup`, which net, tls and undici call for each connection made by
 * name) for the names `answer` decides: an address (a list of it when the caller asked for `all`), or an error; a name
 * it returns undefined for goes on to node:dns. Returns the restore.
 */
export function interceptLookups(answer: (name: string) => LookupAddress | NodeJS.ErrnoException | undefined): () => void {
  const dns = process.getBuiltinModule('node:dns');
  const originalLookup = dns.lookup;
  const originalPromise = dns.promises.lookup;
  const wantsAll = (options: unknown) => typeof options === 'object' && options !== null && (options as LookupOptions).all === true;
  type Callback = (error: NodeJS.ErrnoException | null, address?: string | LookupAddress[], family?: number) => void;
  dns.lookup = function interceptedLookup(name: string, ...rest: unknown[]) {
    const found = answer(String(name));
    if (found === undefined) return (originalLookup as (...a: unknown[]) => unknown).call(dns, name, ...rest);
    const callback = rest.at(-1) as Callback;
    const all = rest.length > 1 && wantsAll(rest[0]);
    process.nextTick(() => (found instanceof Error ? callback(found) : all ? callback(null, [found]) : callback(null, found.address, found.family)));
    return {} as never;
  } as typeof dns.lookup;
  dns.promises.lookup = async function interceptedPromiseLookup(name: string, ...rest: unknown[]) {
    const found = answer(String(name));
    if (found === undefined) return (originalPromise as (...a: unknown[]) => Promise<unknown>).call(dns.promises, name, ...rest);
    if (found instanceof Error) throw found;
    return wantsAll(rest[0]) ? [found] : found;
  } as typeof dns.promises.lookup;
  return () => {
    dns.lookup = originalLookup;
    dns.promises.lookup = originalPromise;
  };
}

/**
 * Refuses (and records) every name resolution through node:dns (`lookup`, `promises.lookup`, used by net and undici)
 * of anything but a loopback name, so a test can prove that no `*.azure-devices.net` name is ever resolved.
 */
export function guardDns(): { readonly resolved: readonly string[]; restore(): void } {
  const resolved: string[] = [];
  const loopback = (name: string): boolean => /^(localhost|127\.\d+\.\d+\.\d+|::1)$/i.test(name);
  const restore = interceptLookups((name) => {
    if (loopback(name)) return undefined;
    resolved.push(name);
    return Object.assign(new Error(`test guard: lookup of ${name} refused (loopback only)`), { code: 'ENOTFOUND' });
  });
  return { resolved, restore };
}
