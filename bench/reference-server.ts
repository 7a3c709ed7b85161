/**
 * The CPU reference for section 4: the least a webhook can do per decision, node:http and jose and nothing else.
 * It reads the body, parses it, verifies `payload.jwt` with jose against the device's key (imported once at start
 * from the same key folder as the webhook) and answers the first linked hub. None of the webhook's checks, limits,
 * logging or twin: what the webhook spends beyond this is the price of those.
 *
 * Usage: node dist/bench/reference-server.js <keys dir>   (prints "listening on <url>" first)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { importSPKI, jwtVerify, type CryptoKey } from 'jose';

const dir = process.argv[2];
if (dir === undefined) throw new TypeError('usage: reference-server.js <keys dir>');
const keys = new Map<string, CryptoKey>();
for (const file of readdirSync(dir)) {
  if (file.endsWith('.pem')) keys.set(file.slice(0, -4), await importSPKI(readFileSync(join(dir, file), 'utf8'), 'ES256'));
}

interface Allocation {
  deviceRuntimeContext: { registrationId: string; payload: { jwt: string } };
  linkedHubs: string[];
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const answer = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    let request: Allocation;
    try {
      request = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Allocation;
    } catch {
      return answer(400, { code: 'request_not_json' });
    }
    const key = keys.get(request.deviceRuntimeContext.registrationId);
    if (key === undefined) return answer(403, { code: 'device_key_not_found' });
    jwtVerify(request.deviceRuntimeContext.payload.jwt, key, { algorithms: ['ES256'] }).then(
      () => answer(200, { iotHubHostName: request.linkedHubs[0] }),
      () => answer(403, { code: 'token_signature_invalid' }),
    );
  });
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`reference listening on http://127.0.0.1:${(server.address() as AddressInfo).port}/api/validatejwt\n`);
});
process.once('SIGTERM', () => server.close(() => process.exit(0)));
