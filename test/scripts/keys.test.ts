import { createHash, createPublicKey } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceSecretName } from '../../functions/keys/names.js';
import { azLines, isWrite, leftovers, sandbox, type Sandbox } from './harness.js';

/** CONTRACTS item 1: sha256 over the DER SPKI of the key. */
function digest(pemFile: string): string {
  const der = createPublicKey(readFileSync(pemFile, 'utf8')).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex');
}
const LIST_VERSIONS = (name: string) =>
  `keyvault secret list-versions --vault-name demo1-kv --name ${name} --query max_by(@, &attributes.created).[[attributes.enabled], keys(tags || \`{}\`), values(tags || \`{}\`)] -o tsv`;

describe('keygen.sh, register-key.sh, activate.sh', () => {
  let box: Sandbox;
  beforeAll(() => {
    box = sandbox();
    box.setState((s) => {
      s.vaults = { 'demo1-kv': { rbac: true, secrets: {}, deleted: {} } };
    });
  });
  afterAll(() => box.cleanup());
  const file = (name: string) => join(box.dir, name);

  it('keygen: a PKCS#8 private key with mode 600 and an SPKI public key; refuses to overwrite', () => {
    const r = box.run('keygen.sh', ['--registration-id', 'sensor-1']);
    expect(r.status).toBe(0);
    expect(readFileSync(file('sensor-1.key.pem'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(statSync(file('sensor-1.key.pem')).mode & 0o777).toBe(0o600);
    expect(readFileSync(file('sensor-1.pub.pem'), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    const before = readFileSync(file('sensor-1.key.pem'), 'utf8');
    const again = box.run('keygen.sh', ['--registration-id', 'sensor-1']);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('--private-key sensor-1.key.pem already exists');
    expect(readFileSync(file('sensor-1.key.pem'), 'utf8')).toBe(before);
    const dry = box.run('keygen.sh', ['--private-key', 'other.key.pem', '--dry-run']);
    expect(dry.stdout).toContain('openssl ecparam -name prime256v1 -genkey -noout');
    expect(dry.stdout).toContain('openssl pkcs8 -topk8 -nocrypt');
    expect(existsSync(file('other.key.pem'))).toBe(false);
  });

  it('register-key: stores the PEM under the webhook name, disabled, with tags and its digest; a second run writes nothing although Key Vault refuses to read it', () => {
    const args = ['--vault', 'demo1-kv', '--registration-id', 'sensor-1', '--public-key', 'sensor-1.pub.pem', '--tag', 'model=s1', '--disabled'];
    const r = box.run('register-key.sh', args);
    expect(r.stderr).not.toMatch(/: error:|ERROR:/);
    expect(r.status).toBe(0);
    const sha = digest(file('sensor-1.pub.pem'));
    expect(azLines(r.calls)).toEqual([
      LIST_VERSIONS('device-sensor-1'),
      "keyvault secret list-deleted --vault-name demo1-kv --query [?name=='device-sensor-1'] | length(@) -o tsv",
      `keyvault secret set --vault-name demo1-kv --name device-sensor-1 --file sensor-1.pub.pem --encoding utf-8 --content-type application/x-pem-file --tags model=s1 public-key-sha256=${sha} --disabled true -o none`,
    ]);
    const secret = box.state().vaults['demo1-kv'].secrets['device-sensor-1'];
    expect(secret).toMatchObject({ enabled: false, contentType: 'application/x-pem-file', tags: { model: 's1', 'public-key-sha256': sha, 'file-encoding': 'utf-8' } });
    expect(secret.value).toBe(readFileSync(file('sensor-1.pub.pem'), 'utf8'));

    // The old script read the value (secret show) and failed on the 403 of a disabled secret.
    const again = box.run('register-key.sh', args);
    expect(again.status).toBe(0);
    expect(again.calls.filter(isWrite)).toEqual([]);
    expect(azLines(again.calls)).toEqual([LIST_VERSIONS('device-sensor-1')]);
    expect(again.stdout).toContain('already stored as device-sensor-1 in demo1-kv (disabled); nothing changed');
    expect(leftovers(box)).toEqual([]);
  });

  it('register-key: a different key for the same device, even disabled, is refused unless --replace', () => {
    box.run('keygen.sh', ['--private-key', 'new.key.pem']);
    const args = ['--vault', 'demo1-kv', '--registration-id', 'SENSOR-1', '--public-key', 'new.pub.pem'];
    const refused = box.run('register-key.sh', args);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('holds a different key for device SENSOR-1; pass --replace');
    expect(refused.calls.filter(isWrite)).toEqual([]);
    const replaced = box.run('register-key.sh', [...args, '--replace', '--disabled']);
    expect(replaced.status).toBe(0);
    const secret = box.state().vaults['demo1-kv'].secrets['device-sensor-1'];
    expect(secret.value).toBe(readFileSync(file('new.pub.pem'), 'utf8'));
    expect(secret).toMatchObject({ enabled: false, tags: { 'public-key-sha256': digest(file('new.pub.pem')) } });
    expect(secret.history).toHaveLength(1);
  });

  it('register-key: a disabled key stored without the digest tag (older script) cannot be compared: clear error, --replace works', () => {
    box.setState((s) => {
      s.vaults['demo1-kv'].secrets['device-legacy'] = { value: 'pem', enabled: false, tags: { 'file-encoding': 'utf-8' }, created: '2026-01-01T00:00:00+00:00' };
    });
    const args = ['--vault', 'demo1-kv', '--registration-id', 'legacy', '--public-key', 'new.pub.pem'];
    const refused = box.run('register-key.sh', args);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('is disabled and has no public-key-sha256 tag');
    expect(box.run('register-key.sh', [...args, '--replace']).status).toBe(0);
  });

  it('register-key: a name in the recycle bin is a clear error naming recover and purge', () => {
    box.setState((s) => {
      s.vaults['demo1-kv'].deleted['device-gone'] = { value: 'pem', enabled: false, tags: {}, created: '2026-01-01T00:00:00+00:00' };
    });
    const r = box.run('register-key.sh', ['--vault', 'demo1-kv', '--registration-id', 'gone', '--public-key', 'new.pub.pem']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('device-gone is deleted but recoverable in demo1-kv');
    expect(r.stderr).toContain('az keyvault secret recover --vault-name demo1-kv --name device-gone');
    expect(r.calls.filter(isWrite)).toEqual([]);
  });

  it('register-key: ids that are not plain names go under devicehash-<sha256>; --dry-run runs nothing', () => {
    const r = box.run('register-key.sh', ['--vault', 'demo1-kv', '--registration-id', 'Line7:Unit.3', '--public-key', 'new.pub.pem', '--dry-run']);
    expect(r.status).toBe(0);
    expect(r.calls).toEqual([]);
    expect(r.stdout).toContain(`--name ${deviceSecretName('Line7:Unit.3')} --file new.pub.pem`);
    expect(deviceSecretName('Line7:Unit.3')).toMatch(/^devicehash-[0-9a-f]{64}$/);
  });

  it('register-key: clear errors for a bad id, an unknown file, a private key, a certificate, a bad tag, no vault', () => {
    writeFileSync(file('cert.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    writeFileSync(file('junk.pem'), 'hello\n');
    const base = ['--vault', 'demo1-kv', '--registration-id', 'sensor-1'];
    const cases: [string[], string][] = [
      [['--vault', 'demo1-kv', '--registration-id', 'bad id!', '--public-key', 'sensor-1.pub.pem'], "--registration-id 'bad id!' is not valid"],
      [['--vault', 'demo1-kv', '--registration-id', 'ends.', '--public-key', 'sensor-1.pub.pem'], "--registration-id 'ends.' is not valid"],
      [[...base, '--public-key', 'missing.pem'], '--public-key missing.pem: no such file'],
      [[...base, '--public-key', 'sensor-1.key.pem'], '--public-key sensor-1.key.pem is a PRIVATE key'],
      [[...base, '--public-key', 'cert.pem'], "holds a 'BEGIN CERTIFICATE' block"],
      [[...base, '--public-key', 'junk.pem'], 'is not a PEM file'],
      [[...base, '--public-key', 'sensor-1.pub.pem', '--tag', 'no.dots=1'], "--tag 'no.dots=1'"],
      [[...base, '--public-key', 'sensor-1.pub.pem', '--tag', 'novalue'], "--tag 'novalue' must be key=value"],
      [['--registration-id', 'sensor-1', '--public-key', 'sensor-1.pub.pem'], 'missing --vault'],
      [['--vault', 'demo1-kv', '--public-key', 'sensor-1.pub.pem'], 'missing --registration-id'],
      [[...base], 'missing --public-key'],
    ];
    for (const [args, message] of cases) {
      const r = box.run('register-key.sh', args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.calls).toEqual([]);
    }
  });

  it('activate: enables a disabled key (read through list-versions, never by value) and merges tags; a second run writes nothing', () => {
    const args = ['--vault', 'demo1-kv', '--registration-id', 'sensor-1', '--tag', 'owner=acme', '--tag', 'model=s2'];
    const sha = digest(file('new.pub.pem'));
    const r = box.run('activate.sh', args);
    expect(r.stderr).not.toMatch(/: error:|ERROR:/);
    expect(r.status).toBe(0);
    expect(azLines(r.calls)).toEqual([
      LIST_VERSIONS('device-sensor-1'),
      `keyvault secret set-attributes --vault-name demo1-kv --name device-sensor-1 --enabled true --tags public-key-sha256=${sha} file-encoding=utf-8 owner=acme model=s2 -o none`,
    ]);
    expect(box.state().vaults['demo1-kv'].secrets['device-sensor-1']).toMatchObject({ enabled: true, tags: { model: 's2', owner: 'acme', 'public-key-sha256': sha } });
    const again = box.run('activate.sh', args);
    expect(again.status).toBe(0);
    expect(again.calls.filter(isWrite)).toEqual([]);
    expect(again.stdout).toContain('already enabled');
  });

  it('activate: enabling without tags keeps the stored ones (no --tags, which would replace them all)', () => {
    box.setState((s) => {
      s.vaults['demo1-kv'].secrets['device-sensor-1'].enabled = false;
    });
    const r = box.run('activate.sh', ['--vault', 'demo1-kv', '--registration-id', 'sensor-1']);
    expect(r.status).toBe(0);
    expect(azLines(r.calls.filter(isWrite))).toEqual(['keyvault secret set-attributes --vault-name demo1-kv --name device-sensor-1 --enabled true -o none']);
    expect(box.state().vaults['demo1-kv'].secrets['device-sensor-1'].tags).toMatchObject({ owner: 'acme', model: 's2' });
  });

  it('activate: a device without a registered key is a clear error', () => {
    const r = box.run('activate.sh', ['--vault', 'demo1-kv', '--registration-id', 'never-registered']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('no key is registered for device never-registered (device-never-registered)');
    expect(box.run('activate.sh', ['--vault', 'demo1-kv']).stderr).toContain('missing --registration-id');
  });
});
