/**
 * The Python sample with `--websockets` (MQTT over WebSockets: wss on port 443 at /$iothub/websocket, for both SDK
 * clients) through the local DPS and hub, which serve it on 443 at a loopback address each (their `wsPort` and
 * `hubWsPort`, from the "ws" work of issue 23). The SDK takes no port, so binding 443 is needed: root, as CI runs.
 *
 * Where the local DPS does not serve WebSockets (a tree without that work) or 443 cannot be bound, the cases are
 * skipped, visibly, with the reason; they were run against the local DPS with WebSockets: both assigned, desired
 * properties read, telemetry recorded.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { generateLocalTls } from '../../dps-emulator/tls.js';
import { group, HUBS, ID_SCOPE, individual, makeDevices, randomKey, startFlow, type Device, type Flow } from '../e2e/fixture.js';
import { onOwnLoopbackAddresses } from '../support/ports.js';
import { runPy } from './run.js';

const individualKey = randomKey();
const groupKey = randomKey(64);
const INDIVIDUAL = 'pyws-0001';
const MEMBER = 'pyws-line9-0002';
let flow: Flow;
let devices: Map<string, Device>;
let dpsAddress: string;
let hubAddress: string;
/** Why the cases cannot run here, if they cannot. */
let unavailable: string | undefined;

beforeAll(async () => {
  flow = await startFlow();
  devices = await makeDevices(flow.work, flow.keysDir, [INDIVIDUAL, MEMBER]);
  const enrollments = {
    individualEnrollments: [individual(INDIVIDUAL, individualKey, flow.webhookUrl())],
    enrollmentGroups: [group('factory-line-9', groupKey, flow.webhookUrl())],
  };
  // Not an object literal: these options exist only where the local DPS serves WebSockets (see the header).
  const webSockets: Record<string, number> = { wsPort: 443, hubWsPort: 443 };
  // 443 on two loopback addresses of their own: the SDK's WebSocket transport cannot be given a port.
  try {
    ({ dpsAddress, hubAddress } = await onOwnLoopbackAddresses(async (dps, hub) => {
      const tls = await generateLocalTls(new Date(), [dps, hub]);
      return flow.startDps(enrollments, { host: dps, hubListenHost: hub, ...webSockets, tls });
    }));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
    unavailable = 'this process may not bind port 443';
    return;
  }
  const dps = flow.dps as unknown as { websocket?: unknown; hub: { websocket?: unknown } };
  if (dps.websocket === undefined || dps.hub.websocket === undefined) unavailable = 'the local DPS here does not serve MQTT over WebSockets';
}, 15 * 60_000);

afterAll(async () => {
  await flow?.close();
});

describe.each([
  { title: 'an individual enrollment', id: INDIVIDUAL, env: (): Record<string, string> => ({ DEVICE_SYMMETRIC_KEY: individualKey }), attestation: 'symmetric-key' },
  { title: 'an enrollment group member', id: MEMBER, env: (): Record<string, string> => ({ DEVICE_GROUP_KEY: groupKey }), attestation: 'group-key' },
])('the Python sample with --websockets, $title', ({ id, env, attestation }) => {
  test('`run --websockets`: assigned over MQTT over WebSockets, then on its hub reads the desired properties and sends telemetry the hub records', async (ctx) => {
    if (unavailable !== undefined) ctx.skip(unavailable);
    const seen = (await flow.webhookLog()).length;
    const run = await runPy(
      ['run', '--registration-id', id, '--id-scope', ID_SCOPE, '--private-key', devices.get(id)!.privateKeyFile, '--host', dpsAddress, '--ca', flow.dps!.caFile, '--websockets', '--hub-host', hubAddress, '--count', '1', '--json'],
      env(),
    );
    expect(run.code, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout) as { registration: Record<string, any>; connection: Record<string, any> };
    expect(out.registration).toMatchObject({ status: 'assigned', deviceId: id, attestation, transport: 'mqtt over websockets' });
    expect(HUBS).toContain(out.registration.assignedHub);
    expect((await flow.webhookLog()).slice(seen).map((l) => l.code)).toEqual(['assigned']);
    expect(out.connection.desired).toEqual({ telemetryInterval: 30, $version: 1 });
    expect(run.stderr).toContain(`connected: ${id} on ${out.registration.assignedHub as string} via ${hubAddress} (MQTT over WebSockets)`);
    const onHub = flow.dps!.hub.device(out.registration.assignedHub as string, id)!;
    expect(onHub.telemetryCount).toBe(1);
    expect(onHub.lastTelemetry!.properties).toMatchObject({ source: 'sample-device-py' });
  }, 180_000);
});
