import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STORAGE_KEY, assertNoSecrets, azLines, isWrite, leftovers, sandbox, type Sandbox } from './harness.js';

const ARGS = ['--location', 'westeurope', '--prefix', 'demo1', '--hubs', '2', '--jwt-max-lifetime', '600'];
const SUB = '/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/demo1-rg/providers';
const VAULT_ID = `${SUB}/Microsoft.KeyVault/vaults/demo1-kv`;
const STORAGE_ID = `${SUB}/Microsoft.Storage/storageAccounts/demo1st`;
const AI_ID = `${SUB}/Microsoft.Insights/components/demo1-ai`;
const APP_ID = `${SUB}/Microsoft.Web/sites/demo1-fn`;
const USER = 'aaaaaaaa-0000-4000-8000-00000000a5e7';
const WORKBOOK_FILE = resolve(import.meta.dirname, '..', '..', 'scripts', 'monitoring', 'workbook.json');
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
/** The workbook's name as deploy.sh derives it from the component's id: a UUID, the same on every run. */
function workbookName(componentId: string): string {
  const h = sha256(componentId.toLowerCase());
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
const WORKBOOK_SHA = sha256(readFileSync(WORKBOOK_FILE, 'utf8').replace(/\n+$/, ''));

function project(box: Sandbox, name: string, source: string): string {
  const dir = join(box.dir, name);
  mkdirSync(join(dir, 'node_modules'), { recursive: true });
  for (const f of ['package.json', 'host.json']) writeFileSync(join(dir, f), '{}\n');
  writeFileSync(join(dir, 'src.txt'), source);
  return dir;
}

describe('deploy.sh (Flex Consumption)', () => {
  let box: Sandbox;
  let dir: string;
  let principal = '';
  const withPrincipal = (lines: string[]) => lines.map((l) => l.split(principal).join('PRINCIPAL'));
  beforeAll(() => {
    box = sandbox();
    dir = project(box, 'project', 'v1\n');
  });
  afterAll(() => box.cleanup());

  it('--dry-run prints every step of a Flex Consumption deploy for an empty subscription and runs nothing', () => {
    const r = box.run('deploy.sh', [...ARGS, '--project-dir', dir, '--dry-run', '--twin-template', '{"tags":{"fleet":"a"}}']);
    expect(r.status).toBe(0);
    expect(r.calls).toEqual([]);
    const lines = r.stdout.trimEnd().split('\n');
    for (const line of [
      'az group create -n demo1-rg -l westeurope -o none',
      'az iot hub create -n demo1-hub-2 -g demo1-rg -l westeurope --sku S1 --unit 1 -o none',
      'az iot dps linked-hub create --dps-name demo1-dps -g demo1-rg --hub-name demo1-hub-1 --hub-resource-group demo1-rg -o none',
      'az keyvault create -n demo1-kv -g demo1-rg -l westeurope --enable-rbac-authorization true -o none',
      'az monitor log-analytics workspace create -g demo1-rg -n demo1-logs -l westeurope -o none',
      "az monitor app-insights component create --app demo1-ai -g demo1-rg -l westeurope --workspace '<workspace-id>' -o none",
      "az functionapp list-flexconsumption-runtimes --location westeurope --runtime node --query '[].version' -o tsv",
      "az functionapp create -g demo1-rg -n demo1-fn --storage-account demo1st --flexconsumption-location westeurope --runtime node --runtime-version 22 --instance-memory 2048 --deployment-storage-name demo1st --deployment-storage-auth-type SystemAssignedIdentity --app-insights demo1-ai --assign-identity '[system]' -o none",
      `az role assignment list --scope '<vault-id>' --role 'Key Vault Secrets User' --query "[?principalId=='<principal-id>'] | length(@)" -o tsv`,
      "az role assignment create --assignee-object-id '<principal-id>' --role 'Key Vault Secrets User' --scope '<vault-id>' --assignee-principal-type ServicePrincipal -o none",
      "az role assignment create --assignee-object-id '<principal-id>' --role 'Storage Table Data Contributor' --scope '<storage-id>' --assignee-principal-type ServicePrincipal -o none",
      "az role assignment create --assignee-object-id '<principal-id>' --role 'Monitoring Metrics Publisher' --scope '<app-insights-id>' --assignee-principal-type ServicePrincipal -o none",
      `az functionapp config appsettings set -g demo1-rg -n demo1-fn --settings KEY_VAULT_URL=https://demo1-kv.vault.azure.net 'DPS_ID_SCOPE=<id-scope>' AzureWebJobsStorage__accountName=demo1st APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD REPLAY_STORE=table REPLAY_TABLE_ACCOUNT_URL=https://demo1st.table.core.windows.net JWT_MAX_LIFETIME_SECONDS=600 'INITIAL_TWIN_TEMPLATE={"tags":{"fleet":"a"}}' NODE_OPTIONS=--max-semi-space-size=8 -o none`,
      'az functionapp config appsettings delete -g demo1-rg -n demo1-fn --setting-names AzureWebJobsStorage -o none',
      `(cd ${dir} && npm run package)`,
      `(cd ${dir} && az functionapp deployment source config-zip -g demo1-rg -n demo1-fn --src dist/app.zip -o none)`,
      "az tag update --resource-id '<function-app-id>' --operation Merge --tags 'dpsJwtWebhookCodeSha256=<package-sha256>' -o none",
    ]) {
      expect(lines).toContain(line);
    }
    expect(lines).toContain(
      `az monitor app-insights workbook create -g demo1-rg -n ${workbookName('<app-insights-id>')} -l westeurope --kind shared --category workbook --display-name 'DPS JWT webhook (demo1-fn)' --source-id '<app-insights-id>' --serialized-data @${WORKBOOK_FILE} --tags dpsJwtWebhookWorkbookSha256=${WORKBOOK_SHA} -o none`,
    );
    expect(r.stderr).toContain('Node.js 22: a dry run cannot ask');
    expect(r.stdout).not.toMatch(/FUNCTIONS_WORKER_RUNTIME|--consumption-plan-location|--os-type|resource tag|--assignee /);
  });

  it('first run: creates everything, the identity holds only its four roles (and the one az grants for the package), storage by identity, one zip deploy', () => {
    const r = box.run('deploy.sh', [...ARGS, '--project-dir', dir]);
    expect(r.stderr).not.toMatch(/: error:|ERROR:/);
    expect(r.status).toBe(0);
    const state = box.state();
    principal = state.apps['demo1-fn'].identity.principalId;
    expect(withPrincipal(azLines(r.calls.filter(isWrite)))).toEqual([
      'group create -n demo1-rg -l westeurope -o none',
      'iot hub create -n demo1-hub-1 -g demo1-rg -l westeurope --sku S1 --unit 1 -o none',
      'iot hub create -n demo1-hub-2 -g demo1-rg -l westeurope --sku S1 --unit 1 -o none',
      'iot dps create -n demo1-dps -g demo1-rg -l westeurope --sku S1 -o none',
      'iot dps linked-hub create --dps-name demo1-dps -g demo1-rg --hub-name demo1-hub-1 --hub-resource-group demo1-rg -o none',
      'iot dps linked-hub create --dps-name demo1-dps -g demo1-rg --hub-name demo1-hub-2 --hub-resource-group demo1-rg -o none',
      'keyvault create -n demo1-kv -g demo1-rg -l westeurope --enable-rbac-authorization true -o none',
      `role assignment create --assignee-object-id ${USER} --role Key Vault Secrets Officer --scope ${VAULT_ID} --assignee-principal-type User -o none`,
      'storage account create -n demo1st -g demo1-rg -l westeurope --sku Standard_LRS --kind StorageV2 --min-tls-version TLS1_2 --allow-blob-public-access false -o none',
      'monitor log-analytics workspace create -g demo1-rg -n demo1-logs -l westeurope -o none',
      'extension add --name application-insights --only-show-errors',
      `monitor app-insights component create --app demo1-ai -g demo1-rg -l westeurope --workspace ${SUB}/Microsoft.OperationalInsights/workspaces/demo1-logs -o none`,
      `monitor app-insights workbook create -g demo1-rg -n ${workbookName(AI_ID)} -l westeurope --kind shared --category workbook --display-name DPS JWT webhook (demo1-fn) --source-id ${AI_ID} --serialized-data @${WORKBOOK_FILE} --tags dpsJwtWebhookWorkbookSha256=${WORKBOOK_SHA} -o none`,
      'functionapp create -g demo1-rg -n demo1-fn --storage-account demo1st --flexconsumption-location westeurope --runtime node --runtime-version 22 --instance-memory 2048 --deployment-storage-name demo1st --deployment-storage-auth-type SystemAssignedIdentity --app-insights demo1-ai --assign-identity [system] -o none',
      `role assignment create --assignee-object-id PRINCIPAL --role Key Vault Secrets User --scope ${VAULT_ID} --assignee-principal-type ServicePrincipal -o none`,
      `role assignment create --assignee-object-id PRINCIPAL --role Storage Blob Data Owner --scope ${STORAGE_ID} --assignee-principal-type ServicePrincipal -o none`,
      `role assignment create --assignee-object-id PRINCIPAL --role Storage Table Data Contributor --scope ${STORAGE_ID} --assignee-principal-type ServicePrincipal -o none`,
      `role assignment create --assignee-object-id PRINCIPAL --role Monitoring Metrics Publisher --scope ${AI_ID} --assignee-principal-type ServicePrincipal -o none`,
      'functionapp config appsettings set -g demo1-rg -n demo1-fn --settings KEY_VAULT_URL=https://demo1-kv.vault.azure.net DPS_ID_SCOPE=0ne00FAKE42 AzureWebJobsStorage__accountName=demo1st APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD REPLAY_STORE=table REPLAY_TABLE_ACCOUNT_URL=https://demo1st.table.core.windows.net JWT_MAX_LIFETIME_SECONDS=600 NODE_OPTIONS=--max-semi-space-size=8 -o none',
      'functionapp config appsettings delete -g demo1-rg -n demo1-fn --setting-names AzureWebJobsStorage -o none',
      'functionapp deployment source config-zip -g demo1-rg -n demo1-fn --src dist/app.zip -o none',
      `tag update --resource-id ${APP_ID} --operation Merge --tags dpsJwtWebhookCodeSha256=${state.apps['demo1-fn'].tags.dpsJwtWebhookCodeSha256} -o none`,
    ]);
    // The role checks never name the fresh identity through Graph (--assignee); they filter by principalId.
    expect(withPrincipal(azLines(r.calls))).toContain(
      `role assignment list --scope ${VAULT_ID} --role Key Vault Secrets User --query [?principalId=='PRINCIPAL'] | length(@) -o tsv`,
    );
    expect(r.calls.flat()).not.toContain('--assignee');
    expect(r.calls.some((c) => c[0] === 'npm' && c.slice(1).join(' ') === 'run package')).toBe(true);
    expect(state.roles.map((x: { principalId: string; role: string; scope: string }) => [x.principalId === principal ? 'app' : x.principalId, x.role, x.scope])).toEqual([
      [USER, 'Key Vault Secrets Officer', VAULT_ID],
      // az's own, for the package container by identity (appservice custom.py, Storage Blob Data Contributor).
      ['app', 'Storage Blob Data Contributor', STORAGE_ID],
      ['app', 'Key Vault Secrets User', VAULT_ID],
      ['app', 'Storage Blob Data Owner', STORAGE_ID],
      ['app', 'Storage Table Data Contributor', STORAGE_ID],
      ['app', 'Monitoring Metrics Publisher', AI_ID],
    ]);
    const app = state.apps['demo1-fn'];
    expect(app).toMatchObject({ flex: true, runtime: 'node|22', instanceMemory: 2048, deploymentStorageAuth: 'SystemAssignedIdentity', published: true });
    expect(app.settings).toEqual({
      APPLICATIONINSIGHTS_CONNECTION_STRING: expect.stringMatching(/^InstrumentationKey=/),
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD',
      KEY_VAULT_URL: 'https://demo1-kv.vault.azure.net',
      DPS_ID_SCOPE: '0ne00FAKE42',
      AzureWebJobsStorage__accountName: 'demo1st',
      REPLAY_STORE: 'table',
      REPLAY_TABLE_ACCOUNT_URL: 'https://demo1st.table.core.windows.net',
      JWT_MAX_LIFETIME_SECONDS: '600',
      NODE_OPTIONS: '--max-semi-space-size=8',
    });
    expect(app.tags.dpsJwtWebhookCodeSha256).toMatch(/^[0-9a-f]{64}$/);
    // The operations workbook, on the component, holding the file's JSON.
    expect(state.workbooks[workbookName(AI_ID)]).toMatchObject({ kind: 'shared', category: 'workbook', sourceId: AI_ID, tags: { dpsJwtWebhookWorkbookSha256: WORKBOOK_SHA } });
    expect(JSON.parse(state.workbooks[workbookName(AI_ID)].serializedData)).toEqual(JSON.parse(readFileSync(WORKBOOK_FILE, 'utf8')));
    expect(r.stdout).toContain('export DPSJWT_RESOURCE_GROUP=demo1-rg DPSJWT_DPS=demo1-dps DPSJWT_VAULT=demo1-kv DPSJWT_APP=demo1-fn');
    assertNoSecrets(r, [STORAGE_KEY]);
    expect(leftovers(box)).toEqual([]);
  });

  it('a second run changes nothing: reads only, the package is rebuilt but unchanged, so not published', () => {
    const before = box.state();
    const r = box.run('deploy.sh', [...ARGS, '--project-dir', dir]);
    expect(r.status).toBe(0);
    expect(r.calls.filter(isWrite)).toEqual([]);
    expect(r.stderr).toContain('code: unchanged since the last publish');
    expect(r.stderr).toContain('app settings: up to date');
    expect(box.state()).toEqual(before);
  });

  it('publishes again when the code changed, and writes only the settings that changed', () => {
    writeFileSync(join(dir, 'src.txt'), 'v2\n');
    const r = box.run('deploy.sh', [...ARGS.slice(0, -2), '--jwt-max-lifetime', '900', '--project-dir', dir]);
    expect(r.status).toBe(0);
    expect(azLines(r.calls.filter(isWrite)).map((l) => l.replace(/Sha256=[0-9a-f]{64}/, 'Sha256=X'))).toEqual([
      'functionapp config appsettings set -g demo1-rg -n demo1-fn --settings JWT_MAX_LIFETIME_SECONDS=900 -o none',
      'functionapp deployment source config-zip -g demo1-rg -n demo1-fn --src dist/app.zip -o none',
      `tag update --resource-id ${APP_ID} --operation Merge --tags dpsJwtWebhookCodeSha256=X -o none`,
    ]);
  });

  it('--no-replay takes the replay settings away and says what that gives up', () => {
    const r = box.run('deploy.sh', [...ARGS.slice(0, -2), '--jwt-max-lifetime', '900', '--project-dir', dir, '--no-replay']);
    expect(r.status).toBe(0);
    expect(azLines(r.calls.filter(isWrite))).toEqual([
      'functionapp config appsettings delete -g demo1-rg -n demo1-fn --setting-names REPLAY_STORE REPLAY_TABLE_ACCOUNT_URL -o none',
    ]);
    expect(r.stderr).toContain('replay protection is off; a token can be presented again until it expires');
    expect(box.state().apps['demo1-fn'].settings).not.toHaveProperty('REPLAY_STORE');
  });

  it('NODE_OPTIONS: scripts/node-options on every run, unless --setting NODE_OPTIONS=... replaces it', () => {
    expect(box.state().apps['demo1-fn'].settings.NODE_OPTIONS).toBe('--max-semi-space-size=8');
    const args = [...ARGS.slice(0, -2), '--jwt-max-lifetime', '900', '--project-dir', dir, '--no-replay'];
    const own = box.run('deploy.sh', [...args, '--setting', 'NODE_OPTIONS=--enable-source-maps']);
    expect(own.status).toBe(0);
    // The user's value alone: one NODE_OPTIONS in the write, ours not appended.
    expect(azLines(own.calls.filter(isWrite))).toEqual(['functionapp config appsettings set -g demo1-rg -n demo1-fn --settings NODE_OPTIONS=--enable-source-maps -o none']);
    expect(box.state().apps['demo1-fn'].settings.NODE_OPTIONS).toBe('--enable-source-maps');
    // Without the flag the next run puts the default back.
    const back = box.run('deploy.sh', args);
    expect(azLines(back.calls.filter(isWrite))).toEqual(['functionapp config appsettings set -g demo1-rg -n demo1-fn --settings NODE_OPTIONS=--max-semi-space-size=8 -o none']);
  });

  it('Node: the newest of 24 and 22 the region offers; --node-version skips the question; none offered is a clear error', () => {
    const other = sandbox();
    try {
      const src = project(other, 'p', 'v1\n');
      const args = ['--location', 'westeurope', '--prefix', 'demo2', '--operator', 'none', '--project-dir', src];
      const r24 = other.run('deploy.sh', args, { env: { FAKE_AZ_FLEX_NODE: '24,22' } });
      expect(r24.status).toBe(0);
      expect(other.state().apps['demo2-fn'].runtime).toBe('node|24');
      expect(r24.stderr).toContain('Node.js 24 (the newest of 24 and 22 that Flex Consumption offers in westeurope)');

      const pinned = other.run('deploy.sh', [...args.map((a) => a.replace('demo2', 'demo3')), '--node-version', '22'], { env: { FAKE_AZ_FLEX_NODE: '24,22' } });
      expect(pinned.status).toBe(0);
      expect(azLines(pinned.calls).some((l) => l.startsWith('functionapp list-flexconsumption-runtimes'))).toBe(false);
      expect(other.state().apps['demo3-fn'].runtime).toBe('node|22');

      const none = other.run('deploy.sh', args.map((a) => a.replace('demo2', 'demo4')), { env: { FAKE_AZ_FLEX_NODE: '20' } });
      expect(none.status).toBe(1);
      expect(none.stderr).toContain('Flex Consumption in westeurope offers no Node 24 or 22 (offered: 20 )');
      expect(other.state().apps['demo4-fn']).toBeUndefined();
    } finally {
      other.cleanup();
    }
  });

  it('--publish-with func publishes the unpacked dist/app.zip with func, only when asked, and cleans up', () => {
    const other = sandbox({ tools: ['az', 'npm', 'func'] });
    try {
      const src = project(other, 'p', 'v1\n');
      const r = other.run('deploy.sh', ['--location', 'westeurope', '--prefix', 'demo5', '--operator', 'none', '--project-dir', src, '--publish-with', 'func']);
      expect(r.stderr).not.toMatch(/: error:|ERROR:/);
      expect(r.status).toBe(0);
      expect(r.calls.filter((c) => c[0] === 'func')).toEqual([['func', 'azure', 'functionapp', 'publish', 'demo5-fn', '--no-build']]);
      expect(azLines(r.calls).some((l) => l.includes('config-zip'))).toBe(false);
      expect(r.stderr).toMatch(/\+ \(cd \S+\/package && func azure functionapp publish demo5-fn --no-build\)/);
      expect(other.state().apps['demo5-fn'].published).toBe(true);
      expect(leftovers(other)).toEqual([]);
    } finally {
      other.cleanup();
    }
  });

  it('refuses missing or malformed arguments, naming them', () => {
    const base = ['--location', 'westeurope', '--prefix', 'demo1'];
    const cases: [string[], string][] = [
      [['--prefix', 'demo1'], 'missing --location'],
      [['--location', 'westeurope'], 'missing --resource-group (or --prefix)'],
      [['--location', 'westeurope', '--prefix', 'Bad_Prefix'], "--prefix 'Bad_Prefix' is not valid"],
      [[...base, '--hubs', '0'], '--hubs 0'],
      [[...base, '--storage', 'Has-Dash'], "--storage 'Has-Dash' is not valid"],
      [[...base, '--twin-template', '[1]'], '--twin-template must be a JSON object'],
      [[...base, '--setting', 'AzureWebJobsStorage=x'], '--setting AzureWebJobsStorage is managed'],
      [[...base, '--setting', 'FUNCTIONS_WORKER_RUNTIME=node'], '--setting FUNCTIONS_WORKER_RUNTIME: Flex Consumption refuses or ignores it'],
      [[...base, '--node-version', '20'], "--node-version '20' is not valid: 22 or 24"],
      [[...base, '--instance-memory', '512'], "--instance-memory '512' is not valid"],
      [[...base, '--publish-with', 'ftp'], '--publish-with must be zip or func'],
      [['--location'], '--location needs a value'],
      [['--bogus'], 'unknown argument: --bogus'],
    ];
    for (const [args, message] of cases) {
      const r = box.run('deploy.sh', ['--no-publish', ...args]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.calls).toEqual([]);
    }
  });

  it('--help explains the flags', () => {
    const r = box.run('deploy.sh', ['--help']);
    expect(r.status).toBe(0);
    for (const flag of ['--location', '--prefix', '--hubs', '--operator', '--node-version', '--instance-memory', '--no-replay', '--publish-with', '--force-publish', '--dry-run']) {
      expect(r.stdout).toContain(flag);
    }
  });
});
