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
