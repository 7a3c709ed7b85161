/** scripts/deploy-portal.sh --dry-run: the plan it prints, and the arguments it refuses (exit 2). */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../e2e/fixture.js';

const run = (...args: string[]) => spawnSync('bash', [join(REPO, 'scripts/deploy-portal.sh'), ...args], { cwd: REPO, encoding: 'utf8' });

describe('deploy-portal.sh --dry-run', () => {
  it('plans the second app: its identity with Key Vault Secrets Officer on the vault only, Entra sign-in, the settings', () => {
    const result = run('--location', 'westeurope', '--prefix', 'acme', '--dry-run');
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toContain(
      "az role assignment create --assignee-object-id '<portal-principal-id>' --assignee-principal-type ServicePrincipal --role 'Key Vault Secrets Officer' --scope '<vault-id>' -o none",
    );
    expect(lines.some((l) => l.startsWith('az functionapp create -g acme-rg -n acme-portal ') && l.includes('--runtime-version 22'))).toBe(true);
    expect(lines.some((l) => l.startsWith('az ad app create --display-name acme-portal') && l.includes('--app-roles'))).toBe(true);
    expect(lines).toContain("az ad sp update --id '<client-id>' --set appRoleAssignmentRequired=true");
    expect(lines.some((l) => l.startsWith('az webapp auth microsoft update -g acme-rg -n acme-portal') && l.includes("--issuer 'https://login.microsoftonline.com/<tenant-id>/v2.0'"))).toBe(true);
    expect(lines).toContain('az webapp auth update -g acme-rg -n acme-portal --enabled true --action RedirectToLoginPage --redirect-provider azureactivedirectory --require-https true -o none');
    const settings = lines.find((l) => l.includes('PORTAL_FIELDS='));
    expect(settings).toContain('KEY_VAULT_URL=https://acme-kv.vault.azure.net');
    expect(settings).toContain("'PORTAL_CSRF_SECRET=***'");
    expect(result.stdout).not.toContain('PORTAL_DEV_SIGN_IN');
  });

  it('refuses a missing location, a bad client id and an unreadable fields file (exit 2)', () => {
    expect(run('--prefix', 'acme', '--dry-run').status).toBe(2);
    expect(run('--location', 'westeurope', '--prefix', 'acme', '--client-id', 'nope', '--dry-run').status).toBe(2);
    const missing = run('--location', 'westeurope', '--prefix', 'acme', '--fields-file', '/nonexistent.json', '--dry-run');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('--fields-file /nonexistent.json');
  });
});
