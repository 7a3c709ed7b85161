import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUNCTION_KEY, leftovers, sandbox, type Sandbox } from './harness.js';

const APP_ID = '/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/demo1-rg/providers/Microsoft.Web/sites/demo1-fn';
const ENROLL = ['-g', 'demo1-rg', '--dps', 'demo1-dps', '--app', 'demo1-fn', '--registration-id', 'sensor-1'];

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

// Issue 12 item 3: a Ctrl-C or SIGTERM during any az call leaves no temporary file behind.
describe('interrupted scripts leave no temporary file', () => {
  let box: Sandbox;
  beforeAll(() => {
    box = sandbox();
    box.setState((s) => {
      s.extensions = { 'azure-iot': { name: 'azure-iot', version: '0.25.0' } };
      s.groups = { 'demo1-rg': { location: 'westeurope' } };
      s.hubs = { 'demo1-hub-1': { devices: {} } };
      s.dps = { 'demo1-dps': { idScope: '0ne00FAKE42', linked: ['demo1-hub-1.azure-devices.net'], enrollments: {}, groups: {}, registrations: {} } };
      s.apps = { 'demo1-fn': { id: APP_ID, flex: true, tags: {}, settings: {}, published: true, indexDelay: 0 } };
    });
  });
  afterAll(() => box.cleanup());

  it('Ctrl-C (SIGINT to the process group) while az holds the webhook URL file: the 0600 file is gone afterwards', async () => {
    const r = await box.interrupt('enroll.sh', ENROLL, { hang: 'iot dps enrollment create', signal: 'SIGINT', group: true });
    expect(r.hungPid).toBeGreaterThan(0);
    expect(r.signal ?? r.status).not.toBe(0);
    // While az ran, the URL was in a 0600 file inside a 0700 directory, and nowhere in argv.
    const urlFile = r.tmpAtSignal.find((f) => f.path.endsWith('/webhook-url'));
    expect(urlFile?.mode).toBe(0o600);
    expect(r.tmpAtSignal.find((f) => urlFile!.path.startsWith(`${f.path}/`))?.mode).toBe(0o700);
    expect(box.allCalls().flat().join(' ')).not.toContain(FUNCTION_KEY);
    expect(leftovers(box)).toEqual([]);
    expect(box.state().dps['demo1-dps'].enrollments['sensor-1']).toBeUndefined();
  });

  it('SIGTERM to the script alone during an az call: it stops the call at once and removes its files', async () => {
    const r = await box.interrupt('enroll.sh', ENROLL, { hang: 'functionapp function keys list', signal: 'SIGTERM', group: false });
    expect(r.hungPid).toBeGreaterThan(0);
    expect(r.signal).toBe('SIGTERM');
    expect(r.tmpAtSignal.length).toBeGreaterThan(0);
    expect(leftovers(box)).toEqual([]);
    // The stopped call may linger a moment as a zombie until it is reaped.
    for (let i = 0; i < 100 && alive(r.hungPid); i++) await new Promise((done) => setTimeout(done, 20));
    expect(alive(r.hungPid)).toBe(false);
  });

  it('deploy.sh interrupted during the zip deploy, and register-key.sh during the secret write: nothing left', async () => {
    const project = join(box.dir, 'project');
    mkdirSync(join(project, 'node_modules'), { recursive: true });
    for (const f of ['package.json', 'host.json']) writeFileSync(join(project, f), '{}\n');
    const deploy = await box.interrupt('deploy.sh', ['--location', 'westeurope', '--prefix', 'demo9', '--project-dir', project], {
      hang: 'deployment source config-zip',
      signal: 'SIGTERM',
      group: true,
    });
    expect(deploy.hungPid).toBeGreaterThan(0);
    expect(deploy.signal ?? deploy.status).not.toBe(0);
    expect(leftovers(box)).toEqual([]);

    box.setState((s) => {
      s.vaults = { 'demo1-kv': { rbac: true, secrets: {}, deleted: {} } };
    });
    expect(box.run('keygen.sh', ['--private-key', 'k.key.pem']).status).toBe(0);
    const pem = join(box.dir, 'k.pub.pem');
    const register = await box.interrupt('register-key.sh', ['--vault', 'demo1-kv', '--registration-id', 'sensor-1', '--public-key', pem], {
      hang: 'keyvault secret set',
      signal: 'SIGINT',
      group: true,
    });
    expect(register.hungPid).toBeGreaterThan(0);
    expect(register.signal ?? register.status).not.toBe(0);
    expect(leftovers(box)).toEqual([]);
  });

  it('deploy-portal.sh interrupted while az holds the settings file with the portal secrets: the 0600 file is gone, no secret in argv', async () => {
    box.setState((s) => {
      s.vaults = { 'demo1-kv': { rbac: true, resourceGroup: 'demo1-rg', secrets: {}, deleted: {} } };
    });
    const r = await box.interrupt('deploy-portal.sh', ['--location', 'westeurope', '-g', 'demo1-rg', '--vault', 'demo1-kv', '--app', 'demo1-portal', '--storage', 'demo1pst', '--no-publish'], {
      hang: 'appsettings set -g demo1-rg -n demo1-portal',
      signal: 'SIGINT',
      group: true,
    });
    expect(r.hungPid).toBeGreaterThan(0);
    expect(r.signal ?? r.status).not.toBe(0);
    const settingsFile = r.tmpAtSignal.find((f) => /\/settings\.[0-9]+\.json$/.test(f.path));
    expect(settingsFile?.mode).toBe(0o600);
    expect(r.tmpAtSignal.find((f) => settingsFile!.path.startsWith(`${f.path}/`))?.mode).toBe(0o700);
    expect(leftovers(box)).toEqual([]);
    const argv = box.allCalls().flat().join(' ');
    expect(argv).toContain('@');
    expect(argv).not.toMatch(/PORTAL_CSRF_SECRET=|MICROSOFT_PROVIDER_AUTHENTICATION_SECRET=/);
  });
});
