import { createHmac } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUNCTION_KEY, STORAGE_KEY, assertNoSecrets, isWrite, leftovers, sandbox, type RunResult, type Sandbox } from './harness.js';

// Issue 12 item 4: every script, run twice against the strict stand-in from an empty subscription. The first run
// does the work; the second changes nothing. No function key or symmetric key ever appears in a recorded argv.
describe('first and second run of every script, from an empty subscription', () => {
  let box: Sandbox;
  let project = '';
  const secrets = new Set<string>([FUNCTION_KEY, STORAGE_KEY]);
  const env = { DPSJWT_RESOURCE_GROUP: 'life-rg', DPSJWT_DPS: 'life-dps', DPSJWT_VAULT: 'life-kv', DPSJWT_APP: 'life-fn', DPSJWT_PURGE_WAIT_SECONDS: '0' };

  /** Collects every symmetric key DPS holds (and the keys derived from group keys) as secrets to look for. */
  function collectKeys(): void {
    const dps = box.state().dps?.['life-dps'];
    for (const e of Object.values<{ keys: { primaryKey: string; secondaryKey: string } }>({ ...dps?.enrollments, ...dps?.groups })) {
      secrets.add(e.keys.primaryKey);
      secrets.add(e.keys.secondaryKey);
    }
    // The portal's Entra client secret and CSRF secret (issue 12 item 3 applied to the portal, issue 15 item 5).
    const portal = box.state().apps?.['life-portal']?.settings ?? {};
    for (const name of ['MICROSOFT_PROVIDER_AUTHENTICATION_SECRET', 'PORTAL_CSRF_SECRET']) if (portal[name]) secrets.add(portal[name]);
    for (const g of Object.values<{ keys: { primaryKey: string } }>(dps?.groups ?? {})) {
      secrets.add(createHmac('sha256', Buffer.from(g.keys.primaryKey, 'base64')).update('sn-007').digest('base64'));
    }
  }
  function run(script: string, args: string[]): RunResult {
    const r = box.run(script, args, { env });
    collectKeys();
    // --show-keys prints the device's own key on purpose; nothing else is ever printed.
    const shown = args.includes('--show-keys') ? [...secrets].filter((x) => r.stdout.split('\n').includes(`  ${x}`)) : [];
    expect(shown.length).toBeLessThanOrEqual(1);
    assertNoSecrets(r, [...secrets].filter((x) => !shown.includes(x)));
    return r;
  }
  /** Runs SCRIPT twice: the first must succeed; the second must leave Azure (the stand-in's state) as it was. */
  function twice(script: string, args: string[], second: { writes: 'none' | 'not-found' } = { writes: 'none' }): [RunResult, RunResult] {
    const first = run(script, args);
    expect(first.stderr, `${script} ${args.join(' ')}`).not.toMatch(/: error:|ERROR:/);
    expect(first.status, `${script} ${args.join(' ')}`).toBe(0);
    const before = box.state();
    const again = run(script, args);
    expect(again.status, `second ${script} ${args.join(' ')}`).toBe(0);
    if (second.writes === 'none') expect(again.calls.filter(isWrite), `second ${script}`).toEqual([]);
    expect(box.state()).toEqual(before);
    expect(leftovers(box)).toEqual([]);
    return [first, again];
  }

  beforeAll(() => {
    box = sandbox();
    project = join(box.dir, 'project');
    mkdirSync(join(project, 'node_modules'), { recursive: true });
    for (const f of ['package.json', 'host.json']) writeFileSync(join(project, f), '{}\n');
  });
  afterAll(() => {
    const argv = box.allCalls().flat().join('\n');
    for (const secret of secrets) expect(argv.includes(secret), 'a secret in a recorded argv').toBe(false);
    box.cleanup();
  });

  it('deploy', () => {
    const [first] = twice('deploy.sh', ['--location', 'westeurope', '--prefix', 'life', '--hubs', '2', '--project-dir', project]);
    expect(first.stdout).toContain('export DPSJWT_RESOURCE_GROUP=life-rg DPSJWT_DPS=life-dps DPSJWT_VAULT=life-kv DPSJWT_APP=life-fn');
  });

  it('deploy --portal: the portal app, its identity and roles, storage by identity, its Entra app and sign-in; a second run changes nothing', () => {
    const [first, again] = twice('deploy.sh', ['--location', 'westeurope', '--prefix', 'life', '--hubs', '2', '--project-dir', project, '--portal']);
    const state = box.state();
    const portal = state.apps['life-portal'];
    expect(portal.flex).toBe(true);
    const entra = Object.values<any>(state.adApps);
    expect(entra.map((a) => a.displayName)).toEqual(['life-portal']);
    expect(entra[0].appRoles.map((r: { value: string }) => r.value)).toEqual(['Device.Activate']);
    expect(entra[0].web.redirectUris).toEqual(['https://life-portal.azurewebsites.net/.auth/login/aad/callback']);
    expect(entra[0].passwordCredentials).toHaveLength(1);
    expect(state.servicePrincipals[entra[0].appId].appRoleAssignmentRequired).toBe(true);
    // The portal's identity may change keys on this vault only; the webhook's stays read-only. Its own storage
    // account it reaches by identity: az's role for the package container, Storage Blob Data Owner for the host.
    const vaultId = '/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/life-rg/providers/Microsoft.KeyVault/vaults/life-kv';
    const storageId = '/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/life-rg/providers/Microsoft.Storage/storageAccounts/lifepst';
    expect(state.roles.filter((r: any) => r.principalId === portal.identity.principalId)).toEqual([
      { principalId: portal.identity.principalId, principalType: 'ServicePrincipal', role: 'Storage Blob Data Contributor', scope: storageId },
      { principalId: portal.identity.principalId, principalType: 'ServicePrincipal', role: 'Key Vault Secrets Officer', scope: vaultId },
      { principalId: portal.identity.principalId, principalType: 'ServicePrincipal', role: 'Storage Blob Data Owner', scope: storageId },
    ]);
    expect(portal.deploymentStorageAuth).toBe('SystemAssignedIdentity');
    expect(portal.settings.AzureWebJobsStorage__accountName).toBe('lifepst');
    // No connection string, so no account key, in any of the portal's settings.
    expect(portal.settings).not.toHaveProperty('AzureWebJobsStorage');
    expect(portal.settings).not.toHaveProperty('DEPLOYMENT_STORAGE_CONNECTION_STRING');
    expect(JSON.stringify(portal.settings)).not.toContain(STORAGE_KEY);
    expect(state.roles.filter((r: any) => r.principalId === state.apps['life-fn'].identity.principalId && r.scope === vaultId).map((r: any) => r.role)).toEqual(['Key Vault Secrets User']);
    expect(portal.auth).toMatchObject({
      platform: { enabled: true },
      globalValidation: { unauthenticatedClientAction: 'RedirectToLoginPage', requireAuthentication: true, redirectToProvider: 'azureactivedirectory' },
      httpSettings: { requireHttps: true },
      identityProviders: { azureActiveDirectory: { registration: { clientId: entra[0].appId, clientSecretSettingName: 'MICROSOFT_PROVIDER_AUTHENTICATION_SECRET', openIdIssuer: 'https://login.microsoftonline.com/tttttttt-0000-0000-0000-000000000000/v2.0' } } },
    });
    expect(portal.settings).toMatchObject({ KEY_VAULT_URL: 'https://life-kv.vault.azure.net', MICROSOFT_PROVIDER_AUTHENTICATION_SECRET: expect.any(String), PORTAL_CSRF_SECRET: expect.any(String) });
    expect(JSON.parse(portal.settings.PORTAL_FIELDS).fields.length).toBeGreaterThan(0);
    expect(Buffer.from(portal.settings.PORTAL_CSRF_SECRET, 'base64')).toHaveLength(32);
    expect(portal.published).toBe(true);
    expect(again.stderr).toContain('portal code: unchanged since the last publish');
    // The secrets reached az only through the 0600 settings file: never in any argv the stand-in recorded.
    const settingsCall = first.calls.find((c) => c.join(' ').startsWith('az functionapp config appsettings set -g life-rg -n life-portal'));
    expect(settingsCall?.some((a) => /^@.*settings\.[0-9]+\.json$/.test(a))).toBe(true);
    const argv = box.allCalls().flat().join('\n');
    expect(argv).not.toContain(portal.settings.MICROSOFT_PROVIDER_AUTHENTICATION_SECRET);
    expect(argv).not.toContain(portal.settings.PORTAL_CSRF_SECRET);
  });

  it('keygen (a second run refuses to overwrite and changes nothing)', () => {
    expect(run('keygen.sh', ['--registration-id', 'sensor-1']).status).toBe(0);
    expect(run('keygen.sh', ['--registration-id', 'sn-007']).status).toBe(0);
    expect(run('keygen.sh', ['--private-key', 'line-7.key.pem']).status).toBe(0);
    const key = readFileSync(join(box.dir, 'sensor-1.key.pem'), 'utf8');
    const again = run('keygen.sh', ['--registration-id', 'sensor-1']);
    expect(again.status).toBe(1);
    expect(readFileSync(join(box.dir, 'sensor-1.key.pem'), 'utf8')).toBe(key);
    expect(leftovers(box)).toEqual([]);
  });

  it('register-key: a device with tags, disabled; another device; a group', () => {
    twice('register-key.sh', ['--registration-id', 'sensor-1', '--public-key', 'sensor-1.pub.pem', '--tag', 'model=s1', '--disabled']);
    twice('register-key.sh', ['--registration-id', 'sn-007', '--public-key', 'sn-007.pub.pem']);
    twice('register-key.sh', ['--group-id', 'line-7', '--public-key', 'line-7.pub.pem']);
    expect(box.state().vaults['life-kv'].secrets['device-sensor-1'].enabled).toBe(false);
  });

  it('activate', () => {
    twice('activate.sh', ['--registration-id', 'sensor-1', '--tag', 'owner=acme']);
    expect(box.state().vaults['life-kv'].secrets['device-sensor-1']).toMatchObject({ enabled: true, tags: { model: 's1', owner: 'acme' } });
  });

  it('enroll: individual, group, update', () => {
    twice('enroll.sh', ['--registration-id', 'sensor-1']);
    twice('enroll.sh', ['--group-id', 'line-7', '--registration-id', 'sn-007', '--show-keys']);
    twice('enroll.sh', ['--registration-id', 'sensor-1', '--update', '--hubs', 'life-hub-1']);
    expect(box.state().dps['life-dps'].enrollments['sensor-1'].iotHubs).toEqual(['life-hub-1.azure-devices.net']);
  });

  it('deprovision: an individual device with purge, one group device, the whole group', () => {
    box.setState((s) => {
      s.dps['life-dps'].registrations['sensor-1'] = { registrationId: 'sensor-1', assignedHub: 'life-hub-1.azure-devices.net', deviceId: 'sensor-1' };
      s.dps['life-dps'].registrations['sn-007'] = { registrationId: 'sn-007', assignedHub: 'life-hub-2.azure-devices.net', deviceId: 'sn-007' };
      s.hubs['life-hub-1'].devices['sensor-1'] = {};
      s.hubs['life-hub-2'].devices['sn-007'] = {};
    });
    // Deletes are tried again on a second run, and answer "not found": nothing changes.
    const [, individual] = twice('deprovision.sh', ['--registration-id', 'sensor-1', '--purge'], { writes: 'not-found' });
    expect(individual.stderr).toContain('individual enrollment sensor-1: already gone');
    const [, device] = twice('deprovision.sh', ['--registration-id', 'sn-007', '--group-id', 'line-7'], { writes: 'not-found' });
    expect(device.stderr).toContain('key secret device-sn-007: already disabled');
    const [, group] = twice('deprovision.sh', ['--group-id', 'line-7'], { writes: 'not-found' });
    expect(group.stderr).toContain('enrollment group line-7: already gone');
    const state = box.state();
    expect(state.dps['life-dps'].enrollments).toEqual({ 'sn-007': expect.objectContaining({ provisioningStatus: 'disabled' }) });
    expect(state.vaults['life-kv'].secrets['device-sn-007'].enabled).toBe(false);
    expect(state.vaults['life-kv'].secrets['device-sensor-1']).toBeUndefined();
    expect(state.vaults['life-kv'].deleted).toEqual({ 'group-line-7': expect.anything() });
  });

  it('no output of any run showed a secret', () => {
    const all = box.allCalls();
    expect(all.length).toBeGreaterThan(100);
    // Outputs were checked run by run (run()); here the argv of every call, for every key DPS has held.
    const argv = all.flat().join('\n');
    for (const secret of secrets) expect(argv).not.toContain(secret);
  });
});
