import { randomInt } from 'node:crypto';
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

/** A loopback address other than 127.0.0.1, drawn at random (Linux answers the whole 127/8). */
export const randomLoopback = (): string => `127.${randomInt(100, 255)}.${randomInt(0, 256)}.${randomInt(1, 255)}`;

/**
 * Runs `start` on two distinct loopback addresses of their own (127.x.y.z), for a local DPS and hub that must listen
 * on the fixed ports clients cannot be told otherwise (the Python SDK's 8883, the SDKs' WebSocket 443). Another
 * process may hold that port on an address: then it draws two others, up to `attempts` times. Any other error is
 * `start`'s to report.
 */
export async function onOwnLoopbackAddresses<T>(
  start: (dpsAddress: string, hubAddress: string) => Promise<T>,
  attempts = 5,
): Promise<{ started: T; dpsAddress: string; hubAddress: string }> {
  for (let attempt = 1; ; attempt++) {
    const dpsAddress = randomLoopback();
    const hubAddress = randomLoopback();
    if (dpsAddress === hubAddress) continue;
    try {
      return { started: await start(dpsAddress, hubAddress), dpsAddress, hubAddress };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= attempts) throw err;
    }
  }
}
