import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUNCTION_KEY, STORAGE_KEY, assertNoSecrets, azLines, isWrite, sandbox, type Sandbox } from './harness.js';

const ARGS = ['--location', 'westeurope', '--prefix', 'demo1', '--hubs', '2', '--jwt-max-lifetime', '600'];

describe('deploy.sh', () => {
  let box: Sandbox;
  let project: string;
  beforeAll(() => {
    box = sandbox();
    project = join(box.dir, 'project');
    mkdirSync(project);
    for (const f of ['package.json', 'package-lock.json', 'host.json']) writeFileSync(join(project, f), '{}\n');
    writeFileSync(join(project, 'src.txt'), 'v1\n');
  });
  afterAll(() => box.cleanup());

  it('--dry-run prints the whole plan for an empty subscription and runs nothing', () => {
    const r = box.run('deploy.sh', [...ARGS, '--project-dir', project, '--dry-run', '--twin-template', '{"tags":{"fleet":"a"}}']);
    expect(r.status).toBe(0);
    expect(r.calls).toEqual([]);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toContain('az group create -n demo1-rg -l westeurope -o none');
    expect(lines).toContain('az iot hub create -n demo1-hub-2 -g demo1-rg -l westeurope --sku S1 --unit 1 -o none');
    expect(lines).toContain('az iot dps linked-hub create --dps-name demo1-dps -g demo1-rg --hub-name demo1-hub-1 --hub-resource-group demo1-rg -o none');
    expect(lines).toContain('az keyvault create -n demo1-kv -g demo1-rg -l westeurope --enable-rbac-authorization true -o none');
    expect(lines).toContain(
      'az functionapp create -g demo1-rg -n demo1-fn --storage-account demo1st --consumption-plan-location westeurope --os-type Linux --functions-version 4 --runtime node --runtime-version 20 -o none',
    );
    expect(lines).toContain(
      "az role assignment create --assignee-object-id '<principal-id>' --role 'Key Vault Secrets User' --scope '<vault-id>' --assignee-principal-type ServicePrincipal -o none",
    );
    expect(lines).toContain(
      `az functionapp config appsettings set -g demo1-rg -n demo1-fn --settings KEY_VAULT_URL=https://demo1-kv.vault.azure.net 'DPS_ID_SCOPE=<id-scope>' JWT_MAX_LIFETIME_SECONDS=600 'INITIAL_TWIN_TEMPLATE={"tags":{"fleet":"a"}}' -o none`,
    );
    expect(lines).toContain(`(cd ${project} && npm ci --no-fund --no-audit)`);
    expect(lines).toContain("az functionapp deployment source config-zip -g demo1-rg -n demo1-fn --src '<work-dir>/package.zip' -o none");
  });

  it('creates everything on the first run, least privilege on the vault, and publishes the code', () => {
    const r = box.run('deploy.sh', [...ARGS, '--project-dir', project]);
    expect(r.stderr).not.toContain('error');
    expect(r.status).toBe(0);
    const az = azLines(r.calls);
    expect(az.filter((l) => / create /.test(` ${l} `)).map((l) => l.split(' -')[0])).toEqual([
      'group create',
      'iot hub create',
      'iot hub create',
      'iot dps create',
      'iot dps linked-hub create',
      'iot dps linked-hub create',
      'keyvault create',
      'role assignment create',
      'storage account create',
      'functionapp create',
      'role assignment create',
    ]);
    const state = box.state();
    expect(state.roles).toEqual([
      { assignee: 'aaaaaaaa-0000-0000-0000-00000000user', role: 'Key Vault Secrets Officer', scope: expect.stringMatching(/\/vaults\/demo1-kv$/) },
      { assignee: 'bbbbbbbb-0000-0000-0000-0000principal', role: 'Key Vault Secrets User', scope: expect.stringMatching(/\/vaults\/demo1-kv$/) },
    ]);
    expect(state.dps['demo1-dps'].linked).toEqual(['demo1-hub-1.azure-devices.net', 'demo1-hub-2.azure-devices.net']);
    expect(state.apps['demo1-fn'].settings).toMatchObject({
      KEY_VAULT_URL: 'https://demo1-kv.vault.azure.net',
      DPS_ID_SCOPE: '0ne00FAKE42',
      JWT_MAX_LIFETIME_SECONDS: '600',
    });
    expect(az.some((l) => l.startsWith('functionapp deployment source config-zip'))).toBe(true);
    expect(state.apps['demo1-fn'].tags.dpsJwtWebhookCodeSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(r.stdout).toContain('export DPSJWT_RESOURCE_GROUP=demo1-rg DPSJWT_DPS=demo1-dps DPSJWT_VAULT=demo1-kv DPSJWT_APP=demo1-fn');
    assertNoSecrets(r, [FUNCTION_KEY, STORAGE_KEY]);
  });

  it('a second run issues only reads: no create, assign, settings write or publish', () => {
    const r = box.run('deploy.sh', [...ARGS, '--project-dir', project]);
    expect(r.status).toBe(0);
    expect(r.calls.filter(isWrite)).toEqual([]);
    expect(r.stderr).toContain('code: unchanged since the last publish');
    expect(r.stderr).toContain('app settings: up to date');
  });

  it('publishes again when the code changed, and writes only the settings that changed', () => {
    writeFileSync(join(project, 'src.txt'), 'v2\n');
    const r = box.run('deploy.sh', [...ARGS.slice(0, -2), '--jwt-max-lifetime', '900', '--project-dir', project]);
    expect(r.status).toBe(0);
    expect(azLines(r.calls.filter(isWrite)).map((l) => l.replace(/--src \S+|--ids \S+|Sha256=\S+/g, 'X'))).toEqual([
      'functionapp config appsettings set -g demo1-rg -n demo1-fn --settings JWT_MAX_LIFETIME_SECONDS=900 -o none',
      'functionapp deployment source config-zip -g demo1-rg -n demo1-fn X -o none',
      'resource tag X --tags dpsJwtWebhookCodeX --is-incremental -o none',
    ]);
  });

  it('refuses missing or malformed arguments, naming them', () => {
    const cases: [string[], string][] = [
      [['--prefix', 'demo1'], 'missing --location'],
      [['--location', 'westeurope'], 'missing --resource-group (or --prefix)'],
      [['--location', 'westeurope', '--prefix', 'Bad_Prefix'], "--prefix 'Bad_Prefix' is not valid"],
      [['--location', 'westeurope', '--prefix', 'demo1', '--hubs', '0'], '--hubs 0'],
      [['--location', 'westeurope', '--prefix', 'demo1', '--storage', 'Has-Dash'], "--storage 'Has-Dash' is not valid"],
      [['--location', 'westeurope', '--prefix', 'demo1', '--twin-template', '[1]'], '--twin-template must be a JSON object'],
      [['--location', 'westeurope', '--prefix', 'demo1', '--setting', 'AzureWebJobsStorage=x'], '--setting AzureWebJobsStorage is managed'],
      [['--location'], '--location needs a value'],
      [['--bogus'], 'unknown argument: --bogus'],
    ];
    for (const [args, message] of cases) {
      const r = box.run('deploy.sh', [...args, '--publish', 'skip']);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.calls).toEqual([]);
    }
  });

  it('--help explains the flags', () => {
    const r = box.run('deploy.sh', ['--help']);
    expect(r.status).toBe(0);
    for (const flag of ['--location', '--prefix', '--hubs', '--operator', '--publish', '--force-publish', '--dry-run']) expect(r.stdout).toContain(flag);
  });
});
