/**
 * The local IoT Hub's rules without a network: what DPS's assignment does to the hub (reprovision policies as DPS
 * documents them), device SAS checks, reported patches within IoT Hub's twin limits.
 */
import { describe, expect, it } from 'vitest';
import common from 'azure-iot-common';
import deviceSdk from 'azure-iot-device';
import { HubAuthError, HubRegistry, TwinOperationError, type DesiredUpdate } from '../../../dps-emulator/hub/registry.js';
import type { HubAssignment } from '../../../dps-emulator/protocol/service.js';

const EU = 'hub-eu.azure-devices.net';
const US = 'hub-us.azure-devices.net';
const KEY = Buffer.alloc(32, 1).toString('base64');
const NOW = new Date('2026-12-03T10:00:00Z');
const nowS = Math.floor(NOW.getTime() / 1000);
const twin = (interval: number) => ({ tags: { site: 'lyon' }, properties: { desired: { telemetryInterval: interval } } });

function assign(over: Partial<HubAssignment> = {}): HubAssignment {
  return {
    registrationId: 'dev-1',
    hub: EU,
    deviceId: 'dev-1',
    keys: [KEY],
    initialTwin: twin(30),
    previous: undefined,
    reprovision: { updateHubAssignment: true, migrateDeviceData: true },
    ...over,
  };
}
const previous = (hub: string) => ({ hub, deviceId: 'dev-1', substatus: 'initialAssignment' as const });

function setup() {
  const removed: string[] = [];
  const pushes: DesiredUpdate[] = [];
  const registry = new HubRegistry([EU, US], { now: () => NOW, onDeviceRemoved: (h, d) => removed.push(`${h}/${d}`), onDesiredUpdate: (u) => pushes.push(u) });
  return { registry, removed, pushes };
}

describe('DPS assigns into the hub', () => {
  it('first assignment: the device with its keys and the initial twin (tags, desired; $-members dropped)', () => {
    const { registry } = setup();
    registry.provision(assign({ initialTwin: { tags: { a: 'b' }, properties: { desired: { telemetryInterval: 9, $version: 44 } } } }));
    expect(registry.device(EU, 'dev-1')!.twin).toEqual({ tags: { a: 'b' }, properties: { desired: { telemetryInterval: 9, $version: 1 }, reported: { $version: 1 } } });
  });

  it('migrate data, same hub: the twin stays as the device and back end left it', () => {
    const { registry } = setup();
    registry.provision(assign());
    registry.patchReported(EU, 'dev-1', '{"fw":"2"}');
    registry.provision(assign({ previous: previous(EU), initialTwin: twin(99) }));
    expect(registry.device(EU, 'dev-1')!.twin.properties).toMatchObject({ desired: { telemetryInterval: 30 }, reported: { fw: '2' } });
  });

  it('migrate data, new hub: the twin moves with the device, which is removed from the old hub', () => {
    const { registry, removed } = setup();
    registry.provision(assign());
    registry.patchReported(EU, 'dev-1', '{"fw":"2"}');
    registry.provision(assign({ hub: US, previous: previous(EU), initialTwin: twin(99) }));
    expect(registry.device(EU, 'dev-1')).toBeUndefined();
    expect(removed).toEqual([`${EU}/dev-1`]);
    expect(registry.device(US, 'dev-1')!.twin.properties).toMatchObject({ desired: { telemetryInterval: 30 }, reported: { fw: '2' } });
  });

  it('reset to initial config: the same hub keeps the twin; a new hub starts from the initial twin (azure-cli-facts §4.2)', () => {
    const { registry } = setup();
    const reset = { updateHubAssignment: true, migrateDeviceData: false };
    registry.provision(assign({ reprovision: reset }));
    registry.patchReported(EU, 'dev-1', '{"fw":"2"}');
    registry.provision(assign({ previous: previous(EU), initialTwin: twin(5), reprovision: reset }));
    expect(registry.device(EU, 'dev-1')!.twin.properties).toMatchObject({ desired: { telemetryInterval: 30 }, reported: { fw: '2' } });
    registry.provision(assign({ hub: US, previous: previous(EU), initialTwin: twin(7), reprovision: reset }));
    expect(registry.device(US, 'dev-1')!.twin.properties).toEqual({ desired: { telemetryInterval: 7, $version: 1 }, reported: { $version: 1 } });
    expect(registry.device(EU, 'dev-1')).toBeUndefined();
  });

  it('never re-provision: the device stays as it is', () => {
    const { registry } = setup();
    const never = { updateHubAssignment: false, migrateDeviceData: false };
    registry.provision(assign({ reprovision: never }));
    registry.provision(assign({ previous: previous(EU), initialTwin: twin(5), reprovision: never }));
    expect(registry.device(EU, 'dev-1')!.twin.properties.desired).toMatchObject({ telemetryInterval: 30, $version: 1 });
  });

  it('refuses a hub no enrollment links', () => {
    expect(() => setup().registry.provision(assign({ hub: 'elsewhere.azure-devices.net' }))).toThrow(TypeError);
  });
});

describe('device authentication', () => {
  const reason = (fn: () => void): string => {
    try {
      fn();
      return 'accepted';
    } catch (err) {
      if (err instanceof HubAuthError) return err.reason;
      throw err;
    }
  };
  const sdkToken = (deviceId: string, key: string, se: number, hub = EU): string => deviceSdk.SharedAccessSignature.create(hub, deviceId, key, se).toString();

  it('accepts the SDK token (sr URL-encoded) and the same resource unencoded; names the failure otherwise', () => {
    const { registry } = setup();
    registry.provision(assign());
    expect(reason(() => registry.authenticate(EU, 'dev-1', sdkToken('dev-1', KEY, nowS + 3600)))).toBe('accepted');
    const raw = common.SharedAccessSignature.create(`${EU}/devices/dev-1`, undefined as unknown as string, KEY, nowS + 60).toString();
    expect(reason(() => registry.authenticate(EU, 'dev-1', raw))).toBe('accepted');
    expect(reason(() => registry.authenticate(EU, 'dev-1', sdkToken('dev-1', Buffer.alloc(32, 2).toString('base64'), nowS + 60)))).toBe('bad_signature');
    expect(reason(() => registry.authenticate(EU, 'dev-1', sdkToken('dev-1', KEY, nowS - 1)))).toBe('expired');
    expect(reason(() => registry.authenticate(EU, 'dev-1', sdkToken('dev-1', KEY, nowS + 10 * 24 * 3600)))).toBe('expiry_too_far');
    expect(reason(() => registry.authenticate(EU, 'dev-1', sdkToken('dev-2', KEY, nowS + 60)))).toBe('wrong_resource');
    expect(reason(() => registry.authenticate(US, 'dev-1', sdkToken('dev-1', KEY, nowS + 60, US)))).toBe('unknown_device');
    expect(reason(() => registry.authenticate('x.azure-devices.net', 'dev-1', sdkToken('dev-1', KEY, nowS + 60)))).toBe('unknown_hub');
    const policy = common.SharedAccessSignature.create(encodeURIComponent(`${EU}/devices/dev-1`), 'iothubowner', KEY, nowS + 60).toString();
    expect(reason(() => registry.authenticate(EU, 'dev-1', policy))).toBe('policy_token');
  });
});

describe('twin operations', () => {
  it('reported patch: merge, null deletes, $version bumps; malformed JSON or an array is 400 and changes nothing', () => {
    const { registry } = setup();
    registry.provision(assign());
    expect(registry.patchReported(EU, 'dev-1', '{"a":{"b":1,"c":2},"d":true}')).toBe(2);
    expect(registry.patchReported(EU, 'dev-1', '{"a":{"c":null},"d":null}')).toBe(3);
    expect(registry.twinProperties(EU, 'dev-1').reported).toEqual({ a: { b: 1 }, $version: 3 });
    for (const bad of ['not json', '[1]', '{"list":[1,2]}']) {
      expect(() => registry.patchReported(EU, 'dev-1', bad)).toThrow(TwinOperationError);
    }
    expect(registry.twinProperties(EU, 'dev-1').reported).toEqual({ a: { b: 1 }, $version: 3 });
  });

  it('IoT Hub twin limits: reported over 32 KB or nested deeper than 10 is refused', () => {
    const { registry } = setup();
    registry.provision(assign());
    expect(() => registry.patchReported(EU, 'dev-1', JSON.stringify({ big: 'x'.repeat(33 * 1024) }))).toThrow(/over IoT Hub's 32768/);
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 11; i++) deep = { n: deep };
    expect(() => registry.patchReported(EU, 'dev-1', JSON.stringify(deep))).toThrow(/deeper than 10/);
    let ten: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 9; i++) ten = { n: ten };
    expect(() => registry.patchReported(EU, 'dev-1', JSON.stringify(ten))).not.toThrow();
  });

  it('a back-end desired update merges, bumps $version and is handed on to be pushed', () => {
    const { registry, pushes } = setup();
    registry.provision(assign());
    expect(registry.updateDesired(EU, 'dev-1', { telemetryInterval: 2, mode: 'eco' })).toBe(2);
    expect(pushes).toEqual([{ hub: EU, deviceId: 'dev-1', patch: { telemetryInterval: 2, mode: 'eco', $version: 2 } }]);
    expect(registry.twinProperties(EU, 'dev-1').desired).toEqual({ telemetryInterval: 2, mode: 'eco', $version: 2 });
  });

  it('telemetry: counted per device, bodies kept up to 4 KiB', () => {
    const { registry } = setup();
    registry.provision(assign());
    registry.recordTelemetry(EU, 'dev-1', { '$.ct': 'application/json' }, Buffer.from('{"t":1}'));
    const big = registry.recordTelemetry(EU, 'dev-1', {}, Buffer.alloc(10_000, 'a'));
    expect(big).toMatchObject({ bodyBytes: 10_000, truncated: true });
    expect(big.body).toHaveLength(4096);
    expect(registry.device(EU, 'dev-1')!.telemetryCount).toBe(2);
    expect(registry.telemetry({ deviceId: 'dev-1' })).toHaveLength(2);
  });
});
