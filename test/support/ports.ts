import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

/** A loopback port nothing listens on: bind port 0, read the port, release it. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/**
 * Whether this process may bind port 443, which the SDKs' WebSocket transports always connect to: as root, or where
 * net.ipv4.ip_unprivileged_port_start allows it.
 */
export function mayBind443(): boolean {
  if (process.getuid?.() === 0) return true;
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim()) <= 443;
  } catch {
    return false;
  }
}
