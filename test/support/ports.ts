import { createServer, type AddressInfo } from 'node:net';

/** A loopback port nothing listens on: bind port 0, read the port, release it. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
