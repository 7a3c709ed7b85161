import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS, parseCommandLine, parseSpec } from './fixtures/az-commands.mjs';
import { FUNCTION_KEY, argvsOf, dryRunAzLines, sandbox, type Sandbox } from './harness.js';

// The stand-in must refuse what the real az refuses, or the script tests prove nothing (issue 12).
describe('the strict az stand-in', () => {
  let box: Sandbox;
  beforeAll(() => {
    box = sandbox();
    box.setState((s) => {
      s.groups = { rg: { location: 'westeurope' } };
      s.dps = { d: { idScope: '0ne00FAKE42', linked: [], enrollments: {}, groups: {}, registrations: {} } };
      s.vaults = { kv: { rbac: true, secrets: {}, deleted: {} } };
      s.storage = { st: { resourceGroup: 'rg' } };
    });
  });
  afterAll(() => box.cleanup());

  it('every table entry parses and names its source', () => {
    for (const [command, [flags, source]] of Object.entries(COMMANDS)) {
      expect(source, command).toMatch(/\S/);
      expect(() => parseSpec(flags), command).not.toThrow();
    }
  });

  it('refuses an unknown flag with exit 2 and the CLI wording (enrollment-group create has no --attestation-type)', () => {
    const r = box.az(['iot', 'dps', 'enrollment-group', 'create', '--dps-name', 'd', '-g', 'rg', '--enrollment-id', 'g1', '--attestation-type', 'symmetrickey']);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('ERROR: unrecognized arguments: --attestation-type symmetrickey\n');
    expect(box.state().dps.d.groups.g1).toBeUndefined();
  });

  it('refuses a missing required flag (an individual registration record is addressed by --enrollment-id)', () => {
    const r = box.az(['iot', 'dps', 'enrollment', 'registration', 'show', '--dps-name', 'd', '-g', 'rg', '--registration-id', 'x']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('the following arguments are required: --enrollment-id/--eid');
  });

  it('follows azure-cli 2.91.0 where real-az.test.ts found the table wrong: no --subscription on Graph commands, no --id on secret set, --tags may be empty', () => {
    const graph = box.az(['ad', 'sp', 'show', '--id', 'x', '--subscription', 's']);
    expect(graph.status).toBe(2);
    expect(graph.stderr).toContain('unrecognized arguments: --subscription s');
    const byId = box.az(['keyvault', 'secret', 'set', '--id', 'https://kv.vault.azure.net/secrets/a', '--value', 'x']);
    expect(byId.status).toBe(2);
    expect(byId.stderr).toContain('the following arguments are required: --vault-name, --name/-n');
    const principal = box.az(['role', 'assignment', 'create', '--assignee-object-id', 'p', '--assignee-principal-type', 'Device', '--role', 'r', '--scope', '/v']);
    expect(principal.status).toBe(2);
    expect(principal.stderr).toContain("invalid choice: 'Device'");
    expect(parseCommandLine(['group', 'create', '-n', 'rg', '-l', 'westeurope', '--tags']).ok).toBe(true);
    expect(parseCommandLine(['iot', 'dps', 'create', '-n', 'd', '-g', 'rg', '--enable-data-residency', 'true'])).toEqual({ ok: false, message: 'unrecognized arguments: --enable-data-residency true' });
  });

  it('workbooks: need the application-insights extension, a UUID name, JSON content and kind shared; show answers the tags', () => {
    const file = join(box.dir, 'wb.json');
    writeFileSync(file, '{"version":"Notebook/1.0","items":[]}\n');
    const name = '0f0e0d0c-0b0a-5908-a706-050403020100';
    const create = (args: string[]) => box.az(['monitor', 'app-insights', 'workbook', 'create', '-g', 'rg', '-l', 'westeurope', '--category', 'workbook', '--display-name', 'W', ...args, '-o', 'none']);
    expect(create(['-n', name, '--serialized-data', `@${file}`]).stderr).toContain("'app-insights' is misspelled or not recognized by the system.");
    box.setState((s) => {
      s.extensions = { ...(s.extensions ?? {}), 'application-insights': { name: 'application-insights', version: '1.2.3' } };
    });
    expect(create(['-n', 'not-a-uuid', '--serialized-data', `@${file}`]).stderr).toContain('must be a UUID');
    expect(create(['-n', name, '--serialized-data', '{not json']).stderr).toContain('serializedData is not valid JSON');
    expect(create(['-n', name, '--serialized-data', `@${file}`, '--kind', 'user']).status).toBe(2);
    expect(box.state().workbooks?.[name]).toBeUndefined();
    expect(create(['-n', name, '--serialized-data', `@${file}`, '--kind', 'shared', '--tags', 'h=1']).status).toBe(0);
    const show = box.az(['monitor', 'app-insights', 'workbook', 'show', '-g', 'rg', '-n', name, '--query', 'tags.h', '-o', 'tsv']);
    expect(show.stdout).toBe('1\n');
    expect(box.az(['monitor', 'app-insights', 'workbook', 'show', '-g', 'rg', '-n', '0f0e0d0c-0b0a-5908-a706-0504030201ff']).status).toBe(3);
  });

  it('refuses unknown groups and commands, and bad enum values', () => {
    const resource = box.az(['resource', 'tag', '--ids', 'x', '--tags', 'a=b']);
    expect(resource.status).toBe(2);
    expect(resource.stderr).toContain("'resource' is misspelled or not recognized by the system.");
    const verb = box.az(['keyvault', 'secret', 'frob', '--vault-name', 'kv']);
    expect(verb.status).toBe(2);
    expect(verb.stderr).toContain("'frob' is misspelled or not recognized by the system.");
    const output = box.az(['account', 'show', '-o', 'xml']);
    expect(output.status).toBe(2);
    expect(output.stderr).toContain("invalid choice: 'xml'");
  });

  it('Key Vault: 403 SecretDisabled on reading a disabled secret, also once deleted; list-versions shows attributes and tags, never the value', () => {
    const pem = join(box.dir, 'k.pem');
    writeFileSync(pem, '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n');
    expect(box.az(['keyvault', 'secret', 'set', '--vault-name', 'kv', '--name', 'device-a', '--file', pem, '--encoding', 'utf-8', '--tags', 'model=s1', '--disabled', 'true', '-o', 'none']).status).toBe(0);
    const show = box.az(['keyvault', 'secret', 'show', '--vault-name', 'kv', '--name', 'device-a']);
    expect(show.status).toBe(1);
    expect(show.stderr).toContain('Operation get is not allowed on a disabled secret.');
    expect(show.stderr).toContain('"code": "SecretDisabled"');
    const versions = box.az(['keyvault', 'secret', 'list-versions', '--vault-name', 'kv', '--name', 'device-a']);
    expect(versions.status).toBe(0);
    const listed = JSON.parse(versions.stdout);
    expect(listed).toEqual([expect.objectContaining({ name: 'device-a', attributes: expect.objectContaining({ enabled: false }), tags: { model: 's1', 'file-encoding': 'utf-8' } })]);
    expect(versions.stdout).not.toContain('BEGIN PUBLIC KEY');
    // tsv booleans are lower case [A2].
    const tsv = box.az(['keyvault', 'secret', 'list', '--vault-name', 'kv', '--query', "[?name=='device-a'].attributes.enabled", '-o', 'tsv']);
    expect(tsv.stdout).toBe('false\n');
    expect(box.az(['keyvault', 'secret', 'delete', '--vault-name', 'kv', '--name', 'device-a', '-o', 'none']).status).toBe(0);
    const deleted = box.az(['keyvault', 'secret', 'show-deleted', '--vault-name', 'kv', '--name', 'device-a']);
    expect(deleted.status).toBe(1);
    expect(deleted.stderr).toContain('SecretDisabled');
    const reuse = box.az(['keyvault', 'secret', 'set', '--vault-name', 'kv', '--name', 'device-a', '--value', 'x', '-o', 'none']);
    expect(reuse.status).toBe(1);
    expect(reuse.stderr).toContain('deleted but recoverable');
  });

  it('Graph: a fresh identity cannot be named by --assignee; listing by scope and filtering principalId works', () => {
    box.setState((s) => {
      s.apps = { fn: { id: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Web/sites/fn', flex: true, identity: null, tags: {}, settings: {} } };
    });
    const assign = box.az(['functionapp', 'identity', 'assign', '-g', 'rg', '-n', 'fn', '--query', 'principalId', '-o', 'tsv']);
    const principal = assign.stdout.trim();
    expect(principal).toMatch(/^[0-9a-f-]{36}$/);
    const byAssignee = box.az(['role', 'assignment', 'list', '--assignee', principal, '--scope', '/v', '--role', 'r']);
    expect(byAssignee.status).toBe(1);
    expect(byAssignee.stderr).toContain('Cannot find user or service principal in graph database');
    const untyped = box.az(['role', 'assignment', 'create', '--assignee-object-id', principal, '--role', 'r', '--scope', '/v']);
    expect(untyped.status).toBe(1);
    expect(box.az(['role', 'assignment', 'create', '--assignee-object-id', principal, '--assignee-principal-type', 'ServicePrincipal', '--role', 'r', '--scope', '/v', '-o', 'none']).status).toBe(0);
    const count = box.az(['role', 'assignment', 'list', '--scope', '/v', '--role', 'r', '--query', `[?principalId=='${principal}'] | length(@)`, '-o', 'tsv']);
    expect(count.stdout).toBe('1\n');
  });

  it('function keys: 404 while the host indexes a fresh publish, all null in the az 2.87 mode, the listkeys POST answers', () => {
    writeFileSync(join(box.dir, 'app.zip'), 'PK');
    expect(box.az(['functionapp', 'deployment', 'source', 'config-zip', '-g', 'rg', '-n', 'fn', '--src', 'app.zip', '-o', 'none'], { FAKE_AZ_INDEX_DELAY: '1' }).status).toBe(0);
    const keys = ['functionapp', 'function', 'keys', 'list', '-g', 'rg', '-n', 'fn', '--function-name', 'validatejwt', '--query', 'default', '-o', 'tsv'];
    expect(box.az(keys).status).toBe(3);
    expect(box.az(keys).stdout).toBe(`${FUNCTION_KEY}\n`);
    const nulls = box.az(keys, { FAKE_AZ_NULL_KEYS: '1' });
    expect(nulls.status).toBe(0);
    expect(nulls.stdout).toBe('');
    const rest = box.az(['rest', '--method', 'post', '--uri', '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Web/sites/fn/functions/validatejwt/listkeys?api-version=2024-04-01', '--query', 'default', '-o', 'tsv']);
    expect(rest.stdout).toBe(`${FUNCTION_KEY}\n`);
  });

  it('reads @file arguments as az does, and records only the path', () => {
    const file = join(box.dir, 'url');
    writeFileSync(file, 'https://fn.azurewebsites.net/api/validatejwt?code=SECRET\n');
    const r = box.az(['iot', 'dps', 'enrollment', 'create', '--dps-name', 'd', '-g', 'rg', '--enrollment-id', 'e1', '--attestation-type', 'symmetrickey', '--allocation-policy', 'custom', '--webhook-url', `@${file}`, '--api-version', '2021-10-01', '-o', 'none']);
    expect(r.status).toBe(0);
    expect(box.state().dps.d.enrollments.e1.customAllocationDefinition.webhookUrl).toBe('https://fn.azurewebsites.net/api/validatejwt?code=SECRET');
    expect(r.calls.flat().join(' ')).not.toContain('SECRET');
    const noApi = box.az(['iot', 'dps', 'enrollment', 'create', '--dps-name', 'd', '-g', 'rg', '--enrollment-id', 'e2', '--attestation-type', 'symmetrickey', '--allocation-policy', 'custom', '--webhook-url', 'https://x']);
    expect(noApi.status).toBe(1);
  });

  it('Flex Consumption: refuses the Linux Consumption flags, Node 20, 512 MB and FUNCTIONS_WORKER_RUNTIME', () => {
    const base = ['functionapp', 'create', '-g', 'rg', '-n', 'fn2', '--storage-account', 'st', '--flexconsumption-location', 'westeurope', '--runtime', 'node'];
    expect(box.az([...base, '--runtime-version', '22', '--os-type', 'Linux']).stderr).toContain('cannot be used with --os-type');
    expect(box.az([...base, '--runtime-version', '20']).stderr).toContain('has reached end-of-life');
    expect(box.az([...base, '--runtime-version', '24']).stderr).toContain('Supported versions for runtime node');
    expect(box.az([...base, '--runtime-version', '22', '--instance-memory', '512']).status).toBe(1);
    expect(box.az([...base, '--runtime-version', '24', '-o', 'none'], { FAKE_AZ_FLEX_NODE: '24,22' }).status).toBe(0);
    const set = box.az(['functionapp', 'config', 'appsettings', 'set', '-g', 'rg', '-n', 'fn2', '--settings', 'FUNCTIONS_WORKER_RUNTIME=node']);
    expect(set.status).toBe(1);
    expect(set.stderr).toContain('(Site.SiteConfig.AppSettings.FUNCTIONS_WORKER_RUNTIME) for Flex Consumption sites is invalid');
    expect(JSON.parse(readFileSync(join(box.dir, 'state.json'), 'utf8')).apps.fn2.settings).not.toHaveProperty('FUNCTIONS_WORKER_RUNTIME');
  });

  it('Flex deployment storage: a connection string by default, the identity with SystemAssignedIdentity; wrong values refused as az refuses them', () => {
    const create = (name: string, ...extra: string[]) =>
      box.az(['functionapp', 'create', '-g', 'rg', '-n', name, '--storage-account', 'st', '--flexconsumption-location', 'westeurope', '--runtime', 'node', '--runtime-version', '22', ...extra, '-o', 'none']);
    const authOf = (name: string) =>
      box.az(['functionapp', 'deployment', 'config', 'show', '-g', 'rg', '-n', name, '--query', 'storage.authentication.type', '-o', 'tsv']).stdout;
    // The enum of --deployment-storage-auth-type (_constants.py DEPLOYMENT_STORAGE_AUTH_TYPES): parse error, exit 2.
    const wrong = create('fn3', '--deployment-storage-auth-type', 'ManagedIdentity');
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toMatch(/ManagedIdentity.*--deployment-storage-auth-type|--deployment-storage-auth-type.*ManagedIdentity/);
    expect(box.state().apps.fn3).toBeUndefined();
    // A value with the system identity is refused by the command (ArgumentUsageError, exit 1).
    const valued = create('fn3', '--dsat', 'SystemAssignedIdentity', '--dsav', 'MY_SETTING');
    expect(valued.status).toBe(1);
    expect(valued.stderr).toContain('--deployment-storage-auth-value is only a valid input when --deployment-storage-auth-type is set to UserAssignedIdentity or StorageAccountConnectionString');
    expect(box.state().apps.fn3).toBeUndefined();
    expect(create('fn3', '--deployment-storage-name', 'nost').status).toBe(3);

    expect(create('fn3').status).toBe(0);
    expect(authOf('fn3')).toBe('StorageAccountConnectionString\n');
    expect(box.state().apps.fn3.settings.DEPLOYMENT_STORAGE_CONNECTION_STRING).toContain('AccountKey=');
    expect(create('fn4', '--deployment-storage-name', 'st', '--deployment-storage-auth-type', 'systemassignedidentity').status).toBe(0);
    expect(authOf('fn4')).toBe('SystemAssignedIdentity\n');
    const fn4 = box.state().apps.fn4;
    expect(fn4.settings).not.toHaveProperty('DEPLOYMENT_STORAGE_CONNECTION_STRING');
    // az grants the identity Storage Blob Data Contributor on the package's account itself.
    const stId = '/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st';
    expect(box.state().roles.filter((r: { principalId: string }) => r.principalId === fn4.identity.principalId)).toEqual([
      { principalId: fn4.identity.principalId, principalType: 'ServicePrincipal', role: 'Storage Blob Data Contributor', scope: stId },
    ]);

    // deployment config set: the same enum and rules; an app made with a connection string switches to the identity.
    const set = ['functionapp', 'deployment', 'config', 'set', '-g', 'rg', '-n', 'fn3'];
    expect(box.az([...set, '--dsat', 'Identity']).status).toBe(2);
    expect(box.az([...set, '--dsat', 'SystemAssignedIdentity', '--dsav', 'x']).status).toBe(1);
    expect(box.az([...set, '--deployment-storage-name', 'st']).stderr).toContain('Please provide both --deployment-storage-name and --deployment-storage-container-name or neither.');
    expect(box.az([...set, '--slot', 'staging', '--dsat', 'SystemAssignedIdentity']).status).toBe(2);
    expect(authOf('fn3')).toBe('StorageAccountConnectionString\n');
    expect(box.az([...set, '--deployment-storage-auth-type', 'SystemAssignedIdentity', '-o', 'none']).status).toBe(0);
    expect(authOf('fn3')).toBe('SystemAssignedIdentity\n');
    const fn3 = box.state().apps.fn3;
    expect(box.state().roles.filter((r: { principalId: string }) => r.principalId === fn3.identity.principalId).map((r: { role: string }) => r.role)).toEqual(['Storage Blob Data Contributor']);
    // Flex only (validate_is_flex_functionapp).
    box.setState((s) => {
      s.apps.classic = { id: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Web/sites/classic', flex: false, identity: null, tags: {}, settings: {} };
    });
    const classic = box.az(['functionapp', 'deployment', 'config', 'show', '-g', 'rg', '-n', 'classic']);
    expect(classic.status).toBe(1);
    expect(classic.stderr).toContain('only valid for Azure Functions on the FlexConsumption plan');
  });

  it('app settings: a JSON @file item is a dict of settings (the value never in argv); an item neither JSON nor NAME=VALUE is refused', () => {
    const file = join(box.dir, 'settings.json');
    writeFileSync(file, '{"PORTAL_CSRF_SECRET":"Q1NSRnNlY3JldA==","A":"x=y"}\n');
    const r = box.az(['functionapp', 'config', 'appsettings', 'set', '-g', 'rg', '-n', 'fn2', '--settings', 'B=1', `@${file}`, '-o', 'none']);
    expect(r.status).toBe(0);
    expect(box.state().apps.fn2.settings).toMatchObject({ PORTAL_CSRF_SECRET: 'Q1NSRnNlY3JldA==', A: 'x=y', B: '1' });
    expect(r.calls.flat().join(' ')).not.toContain('Q1NSRnNlY3JldA==');
    expect(box.az(['functionapp', 'config', 'appsettings', 'set', '-g', 'rg', '-n', 'fn2', '--settings', 'novalue']).status).toBe(1);
  });

  it('Entra: --display-name is a prefix match, --filter eq is exact; create of an existing name patches it; sp show of a missing one is not found', () => {
    const create = (name: string) => box.az(['ad', 'app', 'create', '--display-name', name, '--query', 'appId', '-o', 'tsv']).stdout.trim();
    const old = create('acme-portal-old');
    const portal = create('acme-portal');
    expect(create('acme-portal')).toBe(portal);
    expect(box.az(['ad', 'app', 'list', '--display-name', 'acme-portal', '--query', 'length(@)', '-o', 'tsv']).stdout).toBe('2\n');
    expect(box.az(['ad', 'app', 'list', '--filter', "displayName eq 'acme-portal'", '--query', '[].appId', '-o', 'tsv']).stdout).toBe(`${portal}\n`);
    expect(old).not.toBe(portal);
    const missing = box.az(['ad', 'sp', 'show', '--id', portal]);
    expect(missing.status).toBe(3);
    expect(missing.stderr).toContain('does not exist');
    expect(box.az(['ad', 'sp', 'create', '--id', portal, '-o', 'none']).status).toBe(0);
    expect(box.az(['ad', 'sp', 'update', '--id', portal, '--set', 'appRoleAssignmentRequired=true']).status).toBe(0);
    expect(box.az(['ad', 'sp', 'show', '--id', portal, '--query', 'appRoleAssignmentRequired', '-o', 'tsv']).stdout).toBe('true\n');
    // The role module defines no --password for credential reset (Graph makes the secret): refused.
    expect(box.az(['ad', 'app', 'credential', 'reset', '--id', portal, '--password', 'x']).status).toBe(2);
  });

  it('App Service Authentication v2 needs the authV2 extension; --allowed-token-audiences takes one value', () => {
    const update = ['webapp', 'auth', 'microsoft', 'update', '-g', 'rg', '-n', 'fn2', '--client-id', 'c', '--yes', '-o', 'none'];
    const before = box.az(update);
    expect(before.status).toBe(2);
    expect(before.stderr).toContain("'microsoft' is misspelled or not recognized by the system.");
    expect(box.az(['extension', 'add', '--name', 'authV2', '--only-show-errors']).status).toBe(0);
    expect(box.az(update).status).toBe(0);
    const two = box.az([...update, '--allowed-token-audiences', 'api://a', 'api://b']);
    expect(two.status).toBe(2);
    expect(two.stderr).toContain('unrecognized arguments: api://b');
    expect(box.az(['webapp', 'auth', 'update', '-g', 'rg', '-n', 'fn2', '--action', 'LoginWithAzureActiveDirectory']).status).toBe(2);
  });

  it("every az command of every script's --dry-run plan passes the table", () => {
    const lines = dryRunAzLines(box);
    // bash reads every line as the user's shell would; the table then parses each in this process, as the fake's
    // FAKE_AZ_PARSE_ONLY mode would, without a process per line.
    const argvs = argvsOf(lines, box.dir);
    lines.forEach((line, n) => {
      const parsed = parseCommandLine(argvs[n]!);
      expect(parsed.ok ? '' : parsed.message, line).toBe('');
    });
    expect(lines.length).toBeGreaterThan(150);
  });
});
