import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deviceSecretName, groupSecretName } from '../../functions/keys/names.js';
import { ROOT } from './harness.js';

function bash(script: string, args: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync('bash', ['-c', `set -euo pipefail; source ${JSON.stringify(join(ROOT, 'scripts/lib.sh'))}; ${script}`, 'lib-test', ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const IDS = [
  'sensor-0042',
  'Sensor-0042',
  'SN-007-888-ABC-MAC-A1-B2-C3-D4-E5-F6',
  'a',
  '-',
  'device.with.dots',
  'machine:line7_unit-3',
  'UPPER_case.Mixed:ID-',
  'x'.repeat(119),
  'x'.repeat(120),
  'y'.repeat(128),
  `${'a-'.repeat(59)}z`,
  '0123456789',
];

describe('lib.sh secret names match functions/keys/names.ts', () => {
  it('device and group names are the same in bash and TypeScript', () => {
    const { stdout, status } = bash('for id in "$@"; do printf "%s %s\\n" "$(device_secret_name "$id")" "$(group_secret_name "$id")"; done', IDS);
    expect(status).toBe(0);
    const lines = stdout.trimEnd().split('\n');
    expect(lines).toEqual(IDS.map((id) => `${deviceSecretName(id)} ${groupSecretName(id)}`));
    expect(lines[0]).toBe('device-sensor-0042 group-sensor-0042');
    expect(lines[5]).toMatch(/^devicehash-[0-9a-f]{64} grouphash-[0-9a-f]{64}$/);
  });

  it('accepts DPS registration ids and refuses the rest, naming the flag', () => {
    const good = ['sensor-0042', 'a', 'a.b_c:d-', 'x'.repeat(128), 'A-'];
    const bad = ['', 'ends.', 'ends_', 'ends:', 'has space', 'slash/', 'é', 'x'.repeat(129), 'semi;colon'];
    const ids = [...good, ...bad];
    const { stdout, stderr } = bash('for id in "$@"; do (check_registration_id --registration-id "$id") && echo ok || echo "refused $?"; done', ids);
    expect(stdout.trimEnd().split('\n')).toEqual([...good.map(() => 'ok'), ...bad.map(() => 'refused 2')]);
    expect(stderr.split('\n').filter((l) => l.includes('--registration-id')).length).toBe(bad.length);
  });

  it('masks registered secrets and secret-shaped fields, and dry-run prints instead of running', () => {
    const { stdout } = bash(
      'add_secret "k3y+/=="; mask "url?code=k3y+/== AccountKey=abc; sig=def&se=1 --symmetric-key ghi"; echo; DRY_RUN=1; call --into v --secret -- touch /nonexistent/never; echo "v=$v"',
    );
    expect(stdout).toBe("url?code=*** AccountKey=***; sig=***&se=1 --symmetric-key ***\ntouch /nonexistent/never\nv=<v>\n");
  });
});

describe('lib.sh public_key_digest matches the fleet import (CONTRACTS item 1)', () => {
  // register-key.sh and `fleet import` must tag the same key with the same digest, or each would take the other's key
  // for a different one (a conflict, or a rotation nobody asked for).
  it('one key, two keys in one file, and CRLF line ends give the same digest in bash and TypeScript', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { prepareKey } = await import('../../fleet/keys.js');
    const pem = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const one = pem();
    const files = { one, two: one + pem(), crlf: one.replace(/\n/g, '\r\n') };
    const dir = mkdtempSync(join(tmpdir(), 'digest-'));
    for (const [name, text] of Object.entries(files)) {
      writeFileSync(join(dir, `${name}.pem`), text);
      const { stdout, status } = bash('public_key_digest "$1"', [join(dir, `${name}.pem`)]);
      expect(status).toBe(0);
      const prepared = await prepareKey(text, ['ES256']);
      expect(prepared, name).toHaveProperty('digest');
      expect(stdout, name).toBe((prepared as { digest: string }).digest);
      expect(stdout).toMatch(/^[0-9a-f]{64}$/);
    }
  });
});
