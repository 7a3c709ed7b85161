import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUNCTION_KEY, assertNoSecrets, azLines, isWrite, leftovers, sandbox, type Sandbox } from './harness.js';

const RG = ['-g', 'demo1-rg', '--dps', 'demo1-dps'];
const HUB1 = 'demo1-hub-1.azure-devices.net';
const HUB2 = 'demo1-hub-2.azure-devices.net';
const APP_ID = '/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/demo1-rg/providers/Microsoft.Web/sites/demo1-fn';
const NEW_KEY = 'RotatedKey987654321SECRETfunctionKEYzyxwvuZYXWV==';
const KEYS_LIST = 'functionapp function keys list -g demo1-rg -n demo1-fn --function-name validatejwt --query default -o tsv';
const LISTKEYS_POST = `rest --method post --uri ${APP_ID}/functions/validatejwt/listkeys?api-version=2024-04-01 --query default -o tsv`;

/** The command line with the @file path of the webhook URL replaced by @URLFILE, after checking where it lives. */
function withUrlFile(box: Sandbox, line: string): string {
  return line.replace(/@(\S+)\/webhook-url/, (_all, dir: string) => {
    expect(dir.startsWith(`${box.tmp}/dpsjwt.`)).toBe(true);
    return '@URLFILE';
  });
}

describe('enroll.sh and deprovision.sh', () => {
  let box: Sandbox;
  beforeAll(() => {
    box = sandbox();
    // What deploy.sh leaves behind: two linked hubs, a vault, a function app with its code published.
    box.setState((s) => {
      s.extensions = { 'azure-iot': { name: 'azure-iot', version: '0.25.0' } };
      s.groups = { 'demo1-rg': { location: 'westeurope' } };
      s.hubs = { 'demo1-hub-1': { devices: {} }, 'demo1-hub-2': { devices: {} } };
      s.dps = { 'demo1-dps': { idScope: '0ne00FAKE42', linked: [HUB1, HUB2], enrollments: {}, groups: {}, registrations: {} } };
      s.vaults = { 'demo1-kv': { rbac: true, secrets: {}, deleted: {} } };
      s.apps = {
        'demo1-fn': { id: APP_ID, flex: true, tags: {}, settings: {}, published: true, indexDelay: 0 },
        'bare-fn': { id: APP_ID.replace('demo1-fn', 'bare-fn'), flex: true, tags: {}, settings: {} },
      };
    });
  });
  afterAll(() => box.cleanup());

  it('creates an individual enrollment; the webhook URL goes as @file, so the function key is in no argv', () => {
    const r = box.run('enroll.sh', [...RG, '--app', 'demo1-fn', '--registration-id', 'sensor-1']);
    expect(r.stderr).not.toMatch(/: error:|ERROR:/);
    expect(r.status).toBe(0);
    const az = azLines(r.calls);
    expect(az).toContain(KEYS_LIST);
    expect(withUrlFile(box, az.find((l) => l.startsWith('iot dps enrollment create'))!)).toBe(
      `iot dps enrollment create --dps-name demo1-dps -g demo1-rg --enrollment-id sensor-1 --attestation-type symmetrickey --allocation-policy custom --webhook-url @URLFILE --api-version 2021-10-01 --iot-hubs ${HUB1} ${HUB2} -o none`,
    );
    const enrollment = box.state().dps['demo1-dps'].enrollments['sensor-1'];
    expect(enrollment.customAllocationDefinition).toEqual({ webhookUrl: `https://demo1-fn.azurewebsites.net/api/validatejwt?code=${FUNCTION_KEY}`, apiVersion: '2021-10-01' });
    expect(r.calls.flat().join(' ')).not.toContain(FUNCTION_KEY);
    expect(leftovers(box)).toEqual([]);
    expect(r.stdout).toContain('id scope: 0ne00FAKE42');
    // The device command takes its key from the environment, never from --symmetric-key.
    expect(r.stdout).toContain(
      '  export DEVICE_SYMMETRIC_KEY="$(az iot dps enrollment show --dps-name demo1-dps -g demo1-rg --enrollment-id sensor-1 --show-keys --query attestation.symmetricKey.primaryKey -o tsv)"\n' +
        '  node dist/sample-device/cli.js register --registration-id sensor-1 --id-scope 0ne00FAKE42 --host global.azure-devices-provisioning.net --private-key sensor-1.key.pem --transport mqtt\n',
    );
    expect(r.stdout).not.toContain('--symmetric-key');
    assertNoSecrets(r, [FUNCTION_KEY, enrollment.keys.primaryKey]);
  });

  it('a second run changes nothing; --show-keys prints the key alone on one line and the command reads DEVICE_SYMMETRIC_KEY', () => {
    const r = box.run('enroll.sh', [...RG, '--app', 'demo1-fn', '--registration-id', 'sensor-1', '--show-keys', '--transport', 'http']);
    expect(r.status).toBe(0);
    expect(r.calls.filter(isWrite)).toEqual([]);
    expect(r.stderr).toContain('already exists');
    const primary = box.state().dps['demo1-dps'].enrollments['sensor-1'].keys.primaryKey as string;
    expect((r.stdout + r.stderr).split('\n').filter((l) => l.includes(primary))).toEqual([`  ${primary}`]);
    expect(r.stdout).toContain('  read -rs DEVICE_SYMMETRIC_KEY && export DEVICE_SYMMETRIC_KEY');
    expect(r.stdout).toContain('  node dist/sample-device/cli.js register --registration-id sensor-1 --id-scope 0ne00FAKE42 --host global.azure-devices-provisioning.net --private-key sensor-1.key.pem --transport http');
    expect(r.stdout).not.toContain('--symmetric-key');
    assertNoSecrets(r, [FUNCTION_KEY]);
    expect(leftovers(box)).toEqual([]);
  });

  it('an enrollment group takes no --attestation-type; a group device gets its derived key, never the group key', () => {
    const dry = box.run('enroll.sh', [...RG, '--app', 'demo1-fn', '--group-id', 'line-7', '--hubs', 'demo1-hub-2', '--dry-run']);
    expect(dry.status).toBe(0);
    expect(dry.calls).toEqual([]);
    expect(dry.stdout).toContain(
      "az iot dps enrollment-group create --dps-name demo1-dps -g demo1-rg --enrollment-id line-7 --allocation-policy custom --webhook-url '@<webhook-url-file>' --api-version 2021-10-01 --iot-hubs demo1-hub-2.azure-devices.net -o none",
    );
    const r = box.run('enroll.sh', [...RG, '--app', 'demo1-fn', '--group-id', 'line-7', '--registration-id', 'sn-007', '--hubs', 'demo1-hub-2', '--show-keys']);
    expect(r.stderr).not.toMatch(/: error:|ERROR:/);
    expect(r.status).toBe(0);
    expect(withUrlFile(box, azLines(r.calls).find((l) => l.startsWith('iot dps enrollment-group create'))!)).toBe(
      `iot dps enrollment-group create --dps-name demo1-dps -g demo1-rg --enrollment-id line-7 --allocation-policy custom --webhook-url @URLFILE --api-version 2021-10-01 --iot-hubs ${HUB2} -o none`,
    );
    expect(azLines(r.calls)).toContain('iot dps enrollment-group compute-device-key --dps-name demo1-dps -g demo1-rg --enrollment-id line-7 --registration-id sn-007 -o tsv');
    const group = box.state().dps['demo1-dps'].groups['line-7'];
    expect(group).toMatchObject({ allocationPolicy: 'custom', iotHubs: [HUB2] });
    const lines = r.stdout.split('\n');
    expect(lines.some((l) => l.includes(group.keys.primaryKey))).toBe(false);
    const keyLine = lines[lines.indexOf(lines.find((l) => l.includes('read -rs DEVICE_SYMMETRIC_KEY'))!) + 1]!;
    expect(keyLine).toMatch(/^ {2}[A-Za-z0-9+/]{43}=$/);
    expect(r.stdout).toContain('--registration-id sn-007 --id-scope 0ne00FAKE42 --host global.azure-devices-provisioning.net --private-key sn-007.key.pem');
    assertNoSecrets(r, [FUNCTION_KEY, group.keys.primaryKey]);
  });

  it('az 2.87.x answers null keys: the key comes from the listkeys POST instead', () => {
    const r = box.run('enroll.sh', [...RG, '--app', 'demo1-fn', '--registration-id', 'sensor-3'], { env: { FAKE_AZ_NULL_KEYS: '1' } });
    expect(r.stderr).not.toMatch(/: error:|ERROR:/);
    expect(r.status).toBe(0);
    const az = azLines(r.calls);
    expect(az.slice(az.indexOf(KEYS_LIST), az.indexOf(KEYS_LIST) + 2)).toEqual([KEYS_LIST, LISTKEYS_POST]);
    expect(box.state().dps['demo1-dps'].enrollments['sensor-3'].customAllocationDefinition.webhookUrl).toContain(`code=${FUNCTION_KEY}`);
    expect(r.calls.flat().join(' ')).not.toContain(FUNCTION_KEY);
  });

  it('right after a publish the host may not have indexed the function: retried a bounded number of times', () => {
    box.setState((s) => {
      s.apps['demo1-fn'].indexDelay = 2;
    });
    const r = box.run('enroll.sh', [...RG, '--app', 'demo1-fn', '--registration-id', 'sensor-4'], { env: { DPSJWT_KEY_WAIT_SECONDS: '0' } });
    expect(r.status).toBe(0);
    expect(azLines(r.calls).filter((l) => l === KEYS_LIST || l === LISTKEYS_POST)).toEqual([KEYS_LIST, LISTKEYS_POST, KEYS_LIST]);
    expect(r.stderr).toContain('retrying (1/6)');

    const never = box.run('enroll.sh', [...RG, '--app', 'bare-fn', '--registration-id', 'sensor-2'], { env: { DPSJWT_KEY_TRIES: '2', DPSJWT_KEY_WAIT_SECONDS: '0' } });
    expect(never.status).toBe(1);
    expect(azLines(never.calls).filter((l) => l.startsWith('functionapp function keys list') || l.startsWith('rest '))).toHaveLength(4);
    expect(never.stderr).toContain('no function key for validatejwt in function app bare-fn');
    expect(never.stderr).toContain('400209');
    expect(never.calls.filter(isWrite)).toEqual([]);
  });

  it('--update re-applies the webhook URL after a key rotation, as @file; a second --update changes nothing', () => {
    const env = { FAKE_FUNCTION_KEY: NEW_KEY };
    const r = box.run('enroll.sh', [...RG, '--app', 'demo1-fn', '--registration-id', 'sensor-1', '--update'], { env });
    expect(r.status).toBe(0);
    expect(azLines(r.calls.filter(isWrite)).map((l) => withUrlFile(box, l))).toEqual([
      `iot dps enrollment update --dps-name demo1-dps -g demo1-rg --enrollment-id sensor-1 --allocation-policy custom --webhook-url @URLFILE --api-version 2021-10-01 --iot-hubs ${HUB1} ${HUB2} -o none`,
    ]);
    expect(box.state().dps['demo1-dps'].enrollments['sensor-1'].customAllocationDefinition.webhookUrl).toContain(`code=${NEW_KEY}`);
    const again = box.run('enroll.sh', [...RG, '--app', 'demo1-fn', '--registration-id', 'sensor-1', '--update'], { env });
    expect(again.status).toBe(0);
    expect(again.calls.filter(isWrite)).toEqual([]);
    expect(again.stderr).toContain('up to date; nothing changed');
    assertNoSecrets(r, [FUNCTION_KEY, NEW_KEY]);
    assertNoSecrets(again, [FUNCTION_KEY, NEW_KEY]);
    expect(leftovers(box)).toEqual([]);
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

  it('deprovision: reads the registration record by --enrollment-id, deletes enrollment, device and key (purged)', () => {
    box.setState((s) => {
      s.dps['demo1-dps'].registrations['sensor-1'] = { registrationId: 'sensor-1', assignedHub: HUB2, deviceId: 'sensor-1', status: 'assigned' };
      s.hubs['demo1-hub-2'].devices['sensor-1'] = {};
      s.vaults['demo1-kv'].secrets['device-sensor-1'] = { value: 'pem', enabled: false, tags: {}, created: '2026-01-01T00:00:00+00:00' };
    });
    const r = box.run('deprovision.sh', [...RG, '--vault', 'demo1-kv', '--registration-id', 'sensor-1', '--purge']);
    expect(r.stderr).not.toMatch(/: error:|ERROR:/);
    expect(r.status).toBe(0);
    expect(azLines(r.calls)).toContain('iot dps enrollment registration show --dps-name demo1-dps -g demo1-rg --enrollment-id sensor-1 --query [assignedHub, deviceId] -o tsv');
    expect(azLines(r.calls.filter(isWrite))).toEqual([
      'iot dps enrollment delete --dps-name demo1-dps -g demo1-rg --enrollment-id sensor-1 -o none',
      'iot dps enrollment registration delete --dps-name demo1-dps -g demo1-rg --enrollment-id sensor-1 -o none',
      'iot hub device-identity delete --hub-name demo1-hub-2 -g demo1-rg --device-id sensor-1 -o none',
      'keyvault secret delete --vault-name demo1-kv --name device-sensor-1 -o none',
      'keyvault secret purge --vault-name demo1-kv --name device-sensor-1 -o none',
    ]);
    // A secret deleted while disabled: show-deleted would be refused (403), so the wait lists deleted secrets.
    expect(azLines(r.calls)).toContain("keyvault secret list-deleted --vault-name demo1-kv --query [?name=='device-sensor-1'] | length(@) -o tsv");
    const state = box.state();
    expect(state.dps['demo1-dps'].enrollments['sensor-1']).toBeUndefined();
    expect(state.dps['demo1-dps'].registrations['sensor-1']).toBeUndefined();
    expect(state.hubs['demo1-hub-2'].devices['sensor-1']).toBeUndefined();
    expect(state.vaults['demo1-kv'].secrets['device-sensor-1']).toBeUndefined();
    expect(state.vaults['demo1-kv'].deleted['device-sensor-1']).toBeUndefined();
  });

  it('deprovision: what is already gone is success (every linked hub is tried); other errors fail', () => {
    const again = box.run('deprovision.sh', [...RG, '--vault', 'demo1-kv', '--registration-id', 'sensor-1'], {
      env: { DPSJWT_PURGE_WAIT_TRIES: '1', DPSJWT_PURGE_WAIT_SECONDS: '0' },
    });
    expect(again.status).toBe(0);
    expect(again.calls.filter(isWrite).length).toBeGreaterThan(0); // the deletes are tried, and answer "not found"
    expect(again.stderr).toContain('individual enrollment sensor-1: already gone');
    expect(again.stderr).toContain('device sensor-1 in hub demo1-hub-1: already gone');
    expect(again.stderr).toContain('device sensor-1 in hub demo1-hub-2: already gone');
    expect(again.stderr).toContain('key secret device-sensor-1: already gone');

    box.setState((s) => {
      s.vaults['demo1-kv'].secrets['device-sensor-9'] = { value: 'pem', enabled: true, tags: {}, created: '2026-01-01T00:00:00+00:00' };
    });
    const denied = box.run('deprovision.sh', [...RG, '--vault', 'demo1-kv', '--registration-id', 'sensor-9'], {
      env: { FAKE_AZ_FAIL: 'keyvault secret delete' },
    });
    expect(denied.status).toBe(1);
    expect(denied.stderr).toContain('AuthorizationFailed');
    expect(denied.stderr).toContain('deprovision.sh: error: az failed');
  });

  it('deprovision: a group device is kept out: a disabled individual enrollment, its key disabled (not deleted); a second run changes nothing', () => {
    box.setState((s) => {
      s.dps['demo1-dps'].registrations['sn-007'] = { registrationId: 'sn-007', assignedHub: HUB2, deviceId: 'sn-007' };
      s.hubs['demo1-hub-2'].devices['sn-007'] = {};
      s.vaults['demo1-kv'].secrets['device-sn-007'] = { value: 'pem', enabled: true, tags: { 'public-key-sha256': 'ab' }, created: '2026-01-01T00:00:00+00:00' };
    });
    const args = [...RG, '--vault', 'demo1-kv', '--registration-id', 'sn-007', '--group-id', 'line-7'];
    const r = box.run('deprovision.sh', args);
    expect(r.stderr).not.toMatch(/: error:|ERROR:/);
    expect(r.status).toBe(0);
    expect(azLines(r.calls.filter(isWrite))).toEqual([
      'iot dps enrollment create --dps-name demo1-dps -g demo1-rg --enrollment-id sn-007 --attestation-type symmetrickey --provisioning-status disabled -o none',
      'iot dps enrollment-group registration delete --dps-name demo1-dps -g demo1-rg --registration-id sn-007 -o none',
      'iot hub device-identity delete --hub-name demo1-hub-2 -g demo1-rg --device-id sn-007 -o none',
      'keyvault secret set-attributes --vault-name demo1-kv --name device-sn-007 --enabled false -o none',
    ]);
    const state = box.state();
    expect(state.dps['demo1-dps'].enrollments['sn-007']).toMatchObject({ provisioningStatus: 'disabled' });
    expect(state.dps['demo1-dps'].groups['line-7']).toBeDefined();
    expect(state.vaults['demo1-kv'].secrets['device-sn-007']).toMatchObject({ enabled: false, tags: { 'public-key-sha256': 'ab' } });

    const again = box.run('deprovision.sh', args);
    expect(again.status).toBe(0);
    // The hub is not known any more: each linked hub is asked to delete the device, and answers "not found".
    expect(azLines(again.calls.filter(isWrite))).toEqual([
      'iot hub device-identity delete --hub-name demo1-hub-1 -g demo1-rg --device-id sn-007 -o none',
      'iot hub device-identity delete --hub-name demo1-hub-2 -g demo1-rg --device-id sn-007 -o none',
    ]);
    expect(again.stderr).toContain('exists, disabled');
    expect(again.stderr).toContain('key secret device-sn-007: already disabled');
    expect(box.state()).toEqual(state);

    const purge = box.run('deprovision.sh', [...args, '--purge']);
    expect(purge.status).toBe(2);
    expect(purge.stderr).toContain("a group device's key is disabled, not deleted");
    const bad = box.run('deprovision.sh', [...RG, '--registration-id', 'sn-007']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('missing --vault');
  });

  it('deprovision: a whole group: the group enrollment and its key', () => {
    box.setState((s) => {
      s.vaults['demo1-kv'].secrets['group-line-7'] = { value: 'pem', enabled: true, tags: {}, created: '2026-01-01T00:00:00+00:00' };
    });
    const r = box.run('deprovision.sh', [...RG, '--vault', 'demo1-kv', '--group-id', 'line-7']);
    expect(r.status).toBe(0);
    expect(azLines(r.calls.filter(isWrite))).toEqual([
      'iot dps enrollment-group delete --dps-name demo1-dps -g demo1-rg --enrollment-id line-7 -o none',
      'keyvault secret delete --vault-name demo1-kv --name group-line-7 -o none',
    ]);
    expect(box.state().dps['demo1-dps'].groups['line-7']).toBeUndefined();
    expect(box.state().vaults['demo1-kv'].deleted['group-line-7']).toBeDefined();
  });
});
