import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUNCTION_KEY, assertNoSecrets, azLines, isWrite, sandbox, type Sandbox } from './harness.js';

const RG = ['-g', 'demo1-rg', '--dps', 'demo1-dps'];
const HUB1 = 'demo1-hub-1.azure-devices.net';
const HUB2 = 'demo1-hub-2.azure-devices.net';

describe('enroll.sh and deprovision.sh', () => {
  let box: Sandbox;
  beforeAll(() => {
    box = sandbox();
    // What deploy.sh leaves behind: two linked hubs, a vault, a function app with its code published.
    box.setState((s) => {
      s.extensions = { 'azure-iot': { name: 'azure-iot', version: '0.21.0' } };
      s.groups = { 'demo1-rg': { location: 'westeurope' } };
      s.hubs = { 'demo1-hub-1': { devices: {} }, 'demo1-hub-2': { devices: {} } };
      s.dps = { 'demo1-dps': { idScope: '0ne00FAKE42', linked: [HUB1, HUB2], enrollments: {}, groups: {}, registrations: {} } };
      s.vaults = { 'demo1-kv': { rbac: true, secrets: {}, deleted: {} } };
      s.apps = {
        'demo1-fn': { id: '/sites/demo1-fn', tags: {}, settings: {}, functionKeys: { default: FUNCTION_KEY } },
        'bare-fn': { id: '/sites/bare-fn', tags: {}, settings: {} },
      };
    });
  });
  afterAll(() => box.cleanup());

  it('creates an individual enrollment with the webhook URL and linked hubs, masking the function key', () => {
    const r = box.run('enroll.sh', [...RG, '--app', 'demo1-fn', '--registration-id', 'sensor-1']);
    expect(r.status).toBe(0);
    const create = r.calls.find((c) => c.includes('create'))!;
    expect(create.join(' ')).toBe(
      `az iot dps enrollment create --dps-name demo1-dps -g demo1-rg --enrollment-id sensor-1 --attestation-type symmetrickey --allocation-policy custom --webhook-url https://demo1-fn.azurewebsites.net/api/validatejwt?code=${FUNCTION_KEY} --api-version 2021-10-01 --iot-hubs ${HUB1} ${HUB2} -o none`,
    );
    expect(r.stderr).toContain("--webhook-url 'https://demo1-fn.azurewebsites.net/api/validatejwt?code=***'");
    expect(r.stdout).toContain('id scope: 0ne00FAKE42');
    expect(r.stdout).toContain(
      'node dist/sample-device/cli.js register --registration-id sensor-1 --id-scope 0ne00FAKE42 --host global.azure-devices-provisioning.net --symmetric-key *** --private-key sensor-1.key.pem --transport mqtt',
    );
    expect(r.stdout).toContain('--show-keys --query attestation.symmetricKey.primaryKey');
    const primary = box.state().dps['demo1-dps'].enrollments['sensor-1'].keys.primaryKey as string;
    assertNoSecrets(r, [FUNCTION_KEY, primary]);
  });

  it('a second run leaves the enrollment alone; --show-keys prints the key, and only on that line', () => {
    const r = box.run('enroll.sh', [...RG, '--app', 'demo1-fn', '--registration-id', 'sensor-1', '--show-keys', '--transport', 'http']);
    expect(r.status).toBe(0);
    expect(r.calls.filter(isWrite)).toEqual([]);
    expect(r.stderr).toContain('already exists');
    const primary = box.state().dps['demo1-dps'].enrollments['sensor-1'].keys.primaryKey as string;
    const lines = (r.stdout + r.stderr).split('\n').filter((l) => l.includes(primary));
    expect(lines).toEqual([`  node dist/sample-device/cli.js register --registration-id sensor-1 --id-scope 0ne00FAKE42 --host global.azure-devices-provisioning.net --symmetric-key ${primary} --private-key sensor-1.key.pem --transport http`]);
    assertNoSecrets(r, [FUNCTION_KEY]);
  });

  it('an enrollment group, limited to one hub; --dry-run masks the key and runs nothing', () => {
    const dry = box.run('enroll.sh', [...RG, '--app', 'demo1-fn', '--group-id', 'line-7', '--hubs', 'demo1-hub-2', '--dry-run']);
    expect(dry.status).toBe(0);
    expect(dry.calls).toEqual([]);
    expect(dry.stdout).toContain(
      "az iot dps enrollment-group create --dps-name demo1-dps -g demo1-rg --enrollment-id line-7 --attestation-type symmetrickey --allocation-policy custom --webhook-url 'https://demo1-fn.azurewebsites.net/api/validatejwt?code=***' --api-version 2021-10-01 --iot-hubs demo1-hub-2.azure-devices.net -o none",
    );
    const r = box.run('enroll.sh', [...RG, '--app', 'demo1-fn', '--group-id', 'line-7', '--registration-id', 'sn-007', '--hubs', 'demo1-hub-2']);
    expect(r.status).toBe(0);
    expect(box.state().dps['demo1-dps'].groups['line-7']).toMatchObject({ allocationPolicy: 'custom', iotHubs: [HUB2] });
    expect(r.stdout).toContain('--registration-id sn-007 --id-scope 0ne00FAKE42 --host global.azure-devices-provisioning.net --group-key ***');
    assertNoSecrets(r, [FUNCTION_KEY]);
  });

  it('no function key (code not published) is a clear error that explains the 401', () => {
    const r = box.run('enroll.sh', [...RG, '--app', 'bare-fn', '--registration-id', 'sensor-2']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('no function key for validatejwt in function app bare-fn');
    expect(r.stderr).toContain('400209');
    expect(r.calls.filter(isWrite)).toEqual([]);
  });

  it('refuses missing or malformed arguments, naming them', () => {
    const cases: [string[], string][] = [
      [['--dps', 'demo1-dps', '--app', 'demo1-fn', '--registration-id', 'x'], 'missing --resource-group'],
      [['-g', 'demo1-rg', '--app', 'demo1-fn', '--registration-id', 'x'], 'missing --dps'],
      [[...RG, '--registration-id', 'x'], 'missing --app'],
      [[...RG, '--app', 'demo1-fn'], 'missing --registration-id'],
      [[...RG, '--app', 'demo1-fn', '--registration-id', 'bad/id'], "--registration-id 'bad/id' is not valid"],
      [[...RG, '--app', 'demo1-fn', '--group-id', 'g.'], "--group-id 'g.' is not valid"],
      [[...RG, '--app', 'demo1-fn', '--registration-id', 'x', '--transport', 'amqp'], '--transport must be http or mqtt'],
    ];
    for (const [args, message] of cases) {
      const r = box.run('enroll.sh', args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.calls).toEqual([]);
    }
  });

  it('deprovision: deletes the enrollment, the device in its assigned hub, and the key (purged)', () => {
    box.setState((s) => {
      s.dps['demo1-dps'].registrations['sensor-1'] = { registrationId: 'sensor-1', assignedHub: HUB2, deviceId: 'sensor-1', status: 'assigned' };
      s.hubs['demo1-hub-2'].devices['sensor-1'] = {};
      s.vaults['demo1-kv'].secrets['device-sensor-1'] = { value: 'pem', enabled: true, tags: {} };
    });
    const r = box.run('deprovision.sh', [...RG, '--vault', 'demo1-kv', '--registration-id', 'sensor-1', '--purge']);
    expect(r.status).toBe(0);
    expect(azLines(r.calls.filter(isWrite))).toEqual([
      'iot dps enrollment delete --dps-name demo1-dps -g demo1-rg --enrollment-id sensor-1 -o none',
      'iot hub device-identity delete --hub-name demo1-hub-2 -g demo1-rg --device-id sensor-1 -o none',
      'keyvault secret delete --vault-name demo1-kv --name device-sensor-1 -o none',
      'keyvault secret purge --vault-name demo1-kv --name device-sensor-1 -o none',
    ]);
    const state = box.state();
    expect(state.dps['demo1-dps'].enrollments['sensor-1']).toBeUndefined();
    expect(state.hubs['demo1-hub-2'].devices['sensor-1']).toBeUndefined();
    expect(state.vaults['demo1-kv'].secrets['device-sensor-1']).toBeUndefined();
    expect(state.vaults['demo1-kv'].deleted['device-sensor-1']).toBeUndefined();
  });

  it('deprovision: what is already gone is success (every linked hub is tried); other errors fail', () => {
    const again = box.run('deprovision.sh', [...RG, '--vault', 'demo1-kv', '--registration-id', 'sensor-1'], {
      env: { DPSJWT_PURGE_WAIT_TRIES: '1', DPSJWT_PURGE_WAIT_SECONDS: '0' },
    });
    expect(again.status).toBe(0);
    expect(again.stderr).toContain('individual enrollment sensor-1: already gone');
    expect(again.stderr).toContain('device sensor-1 in hub demo1-hub-1: already gone');
    expect(again.stderr).toContain('device sensor-1 in hub demo1-hub-2: already gone');
    expect(again.stderr).toContain('key secret device-sensor-1: already gone');

    const denied = box.run('deprovision.sh', [...RG, '--vault', 'demo1-kv', '--registration-id', 'sensor-1'], {
      env: { FAKE_AZ_FAIL: 'keyvault secret delete' },
    });
    expect(denied.status).toBe(1);
    expect(denied.stderr).toContain('AuthorizationFailed');
    expect(denied.stderr).toContain('deprovision.sh: error: az failed');
  });

  it('deprovision: a group device loses its registration record, not the group', () => {
    box.setState((s) => {
      s.dps['demo1-dps'].registrations['sn-007'] = { registrationId: 'sn-007', assignedHub: HUB2, deviceId: 'sn-007' };
      s.hubs['demo1-hub-2'].devices['sn-007'] = {};
    });
    const r = box.run('deprovision.sh', [...RG, '--vault', 'demo1-kv', '--registration-id', 'sn-007', '--group-id', 'line-7', '--keep-key']);
    expect(r.status).toBe(0);
    expect(azLines(r.calls.filter(isWrite))).toEqual([
      'iot dps enrollment-group registration delete --dps-name demo1-dps -g demo1-rg --registration-id sn-007 -o none',
      'iot hub device-identity delete --hub-name demo1-hub-2 -g demo1-rg --device-id sn-007 -o none',
    ]);
    expect(box.state().dps['demo1-dps'].groups['line-7']).toBeDefined();
    const bad = box.run('deprovision.sh', [...RG, '--registration-id', 'sn-007']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('missing --vault');
  });
});
