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
 * Refuses (and records) every name resolution through node:dns (`lookup`, `promises.lookup`, used by net and undici)
 * of anything but a loopback name, so a test can prove that no `*.azure-devices.net` name is ever resolved.
 */
export function guardDns(): { readonly resolved: readonly string[]; restore(): void } {
  const dns = process.getBuiltinModule('node:dns');
  const resolved: string[] = [];
  const loopback = (name: unknown): boolean => typeof name === 'string' && /^(localhost|127\.\d+\.\d+\.\d+|::1)$/i.test(name);
  const originalLookup = dns.lookup;
  const originalPromise = dns.promises.lookup;
  const refuse = (name: string): NodeJS.ErrnoException => Object.assign(new Error(`test guard: lookup of ${name} refused (loopback only)`), { code: 'ENOTFOUND' });
  dns.lookup = function guardedLookup(name: string, ...rest: unknown[]) {
    if (!loopback(name)) {
      resolved.push(String(name));
      const callback = rest.at(-1) as (err: Error) => void;
      process.nextTick(() => callback(refuse(String(name))));
      return {} as never;
    }
    return (originalLookup as (...a: unknown[]) => unknown).call(dns, name, ...rest);
  } as typeof dns.lookup;
  dns.promises.lookup = async function guardedPromiseLookup(name: string, ...rest: unknown[]) {
    if (!loopback(name)) {
      resolved.push(String(name));
      throw refuse(String(name));
    }
    return (originalPromise as (...a: unknown[]) => Promise<unknown>).call(dns.promises, name, ...rest);
  } as typeof dns.promises.lookup;
  return {
    resolved,
    restore: () => {
      dns.lookup = originalLookup;
      dns.promises.lookup = originalPromise;
    },
  };
}
