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
      "az role assignment create --assignee-object-id '<portal-principal-id>' --role 'Key Vault Secrets Officer' --scope '<vault-id>' --assignee-principal-type ServicePrincipal -o none",
    );
    expect(lines.some((l) => l.startsWith('az functionapp create -g acme-rg -n acme-portal ') && l.includes('--runtime-version 22'))).toBe(true);
    expect(lines.some((l) => l.startsWith('az ad app create --display-name acme-portal') && l.includes('--app-roles'))).toBe(true);
    expect(lines).toContain("az ad sp update --id '<client-id>' --set appRoleAssignmentRequired=true");
    expect(lines.some((l) => l.startsWith('az webapp auth microsoft update -g acme-rg -n acme-portal') && l.includes("--issuer 'https://login.microsoftonline.com/<tenant-id>/v2.0'"))).toBe(true);
    expect(lines).toContain('az webapp auth update -g acme-rg -n acme-portal --enabled true --action RedirectToLoginPage --redirect-provider azureactivedirectory --require-https true -o none');
    // By exact name: --display-name would be a prefix match.
    expect(lines).toContain(`az ad app list --filter "displayName eq 'acme-portal'" --query '[0].appId' -o tsv`);
    expect(lines).toContain('az extension add --name authV2 --only-show-errors');
    const settings = lines.find((l) => l.includes('PORTAL_FIELDS='));
    expect(settings).toContain('KEY_VAULT_URL=https://acme-kv.vault.azure.net');
    // The client secret and the CSRF secret reach az only through a 0600 file, never as NAME=VALUE on argv.
    expect(settings).toMatch(/ '@<settings\.json>' -o none$/);
    expect(result.stdout).not.toContain('PORTAL_CSRF_SECRET=');
    expect(result.stdout).not.toContain('MICROSOFT_PROVIDER_AUTHENTICATION_SECRET=');
    expect(result.stdout).not.toContain('PORTAL_DEV_SIGN_IN');
  });

  it('deploy.sh --portal plans the webhook and then the same portal steps on its group, location and vault', () => {
    const result = spawnSync('bash', [join(REPO, 'scripts/deploy.sh'), '--location', 'westeurope', '--prefix', 'acme', '--no-publish', '--portal', '--dry-run'], { cwd: REPO, encoding: 'utf8' });
    expect(result.status).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines.indexOf('az functionapp create -g acme-rg -n acme-portal --storage-account acmepst --flexconsumption-location westeurope --runtime node --runtime-version 22 --instance-memory 2048 -o none')).toBeGreaterThan(
      lines.findIndex((l) => l.startsWith('az functionapp create -g acme-rg -n acme-fn ')),
    );
    expect(lines.some((l) => l.startsWith('az webapp auth update -g acme-rg -n acme-portal '))).toBe(true);
    expect(result.stdout).not.toContain('esbuild');
    expect(result.stderr).toContain('# the portal: scripts/deploy-portal.sh --location westeurope -g acme-rg --vault acme-kv --app acme-portal --storage acmepst --no-publish --dry-run');
  });

  it('deploy.sh refuses a bad portal argument before anything runs, and a portal flag without --portal (exit 2)', () => {
    const bad = spawnSync('bash', [join(REPO, 'scripts/deploy.sh'), '--location', 'westeurope', '--prefix', 'acme', '--portal', '--portal-client-id', 'nope', '--dry-run'], { cwd: REPO, encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toContain("--portal: --client-id 'nope' is not valid");
    const lone = spawnSync('bash', [join(REPO, 'scripts/deploy.sh'), '--location', 'westeurope', '--prefix', 'acme', '--portal-app', 'x', '--dry-run'], { cwd: REPO, encoding: 'utf8' });
    expect(lone.status).toBe(2);
    expect(lone.stderr).toContain('--portal-app needs --portal');
  });

  it('refuses a missing location, a bad client id and an unreadable fields file (exit 2)', () => {
    expect(run('--prefix', 'acme', '--dry-run').status).toBe(2);
    expect(run('--location', 'westeurope', '--prefix', 'acme', '--client-id', 'nope', '--dry-run').status).toBe(2);
    const missing = run('--location', 'westeurope', '--prefix', 'acme', '--fields-file', '/nonexistent.json', '--dry-run');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('--fields-file /nonexistent.json');
  });
});
