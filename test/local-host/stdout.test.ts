/** The local host's default log: decision lines gathered per event-loop turn reach stdout whole, one per decision. */
import { afterEach, describe, expect, test, vi } from 'vitest';
import { startLocalHost } from '../../local-host/server.js';
import { allocationRequest, deviceToken, ID_SCOPE, keysDir, makeDevice } from '../support/devices.js';

afterEach(() => vi.restoreAllMocks());

describe('npm start: decision lines on stdout', () => {
  test('every decision of a concurrent burst is one whole JSON line, all written by the time the host is closed', async () => {
    const device = await makeDevice('sensor-burst');
    const written: string[] = [];
    const host = await startLocalHost({ env: { DEVICE_KEYS_DIR: await keysDir([device]), DPS_ID_SCOPE: ID_SCOPE }, port: 0 });
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => (written.push(String(chunk)), true));
    const token = await deviceToken(device, Math.floor(Date.now() / 1000));
    const statuses = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const body = i % 2 === 0 ? JSON.stringify(allocationRequest({ registrationId: device.id, token })) : 'not json';
        const response = await fetch(host.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        await response.arrayBuffer();
        return response.status;
      }),
    );
    await host.close();
    const text = written.join('');
    expect(text.endsWith('\n')).toBe(true);
    const lines = text.trimEnd().split('\n').map((l) => JSON.parse(l) as { event: string; status: number });
    expect(lines).toHaveLength(20);
    expect(lines.every((l) => l.event === 'validatejwt')).toBe(true);
    expect(lines.map((l) => l.status).sort()).toEqual(statuses.sort());
  });
});
