import { describe, expect, it } from 'vitest';
import common from 'azure-iot-common';
import { createSas, deriveDeviceKey, MAX_SAS_LIFETIME_SECONDS, parseSas, SasError, verifySas } from '../../../dps-emulator/protocol/sas.js';

const SCOPE = '0ne00000000';
const ID = 'sensor-0042';
const PRIMARY = Buffer.alloc(32, 1).toString('base64');
const SECONDARY = Buffer.alloc(32, 2).toString('base64');
const NOW = 1_800_000_000;

function verify(token: string, opts: { id?: string; keys?: string[]; now?: number } = {}): number {
  return verifySas({ sas: parseSas(token), idScope: SCOPE, registrationId: opts.id ?? ID, keys: opts.keys ?? [PRIMARY, SECONDARY], nowSeconds: opts.now ?? NOW });
}

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof SasError) return err.reason;
    throw err;
  }
  return 'accepted';
}

describe('group key derivation', () => {
  it('matches the DPS documentation test vector', () => {
    expect(deriveDeviceKey('8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==', 'sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6'))
      .toBe('Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=');
  });
});

describe('SAS verification', () => {
  it('accepts a token made by the Azure IoT SDK itself (sr unencoded), with the primary key', () => {
    const token = common.SharedAccessSignature.create(`${SCOPE}/registrations/${ID}`, 'registration', PRIMARY, NOW + 3600).toString();
    expect(verify(token)).toBe(0);
  });

  it('accepts the secondary key and says which key matched', () => {
    expect(verify(createSas(SCOPE, ID, SECONDARY, NOW + 60))).toBe(1);
  });

  it('accepts the docs Python form: sr URL-encoded and signed encoded', () => {
    const token = createSas(SCOPE, ID, PRIMARY, NOW + 60, { encodeSr: true });
    expect(token).toContain(`sr=${SCOPE}%2Fregistrations%2F${ID}&`);
    expect(verify(token)).toBe(0);
  });

  it('rejects an expired token, and one expiring this very second', () => {
    expect(reason(() => verify(createSas(SCOPE, ID, PRIMARY, NOW - 1)))).toBe('expired');
    expect(reason(() => verify(createSas(SCOPE, ID, PRIMARY, NOW)))).toBe('expired');
  });

  it('rejects a token signed with another key', () => {
    expect(reason(() => verify(createSas(SCOPE, ID, Buffer.alloc(32, 9).toString('base64'), NOW + 60)))).toBe('bad_signature');
  });

  it('rejects a token whose expiry was pushed out after signing', () => {
    const token = createSas(SCOPE, ID, PRIMARY, NOW + 60).replace(`se=${NOW + 60}`, `se=${NOW + 3600}`);
    expect(reason(() => verify(token))).toBe('bad_signature');
  });

  it('rejects a valid token for another registration or id scope', () => {
    expect(reason(() => verify(createSas(SCOPE, 'other-device', PRIMARY, NOW + 60)))).toBe('wrong_resource');
    expect(reason(() => verify(createSas('0ne99999999', ID, PRIMARY, NOW + 60)))).toBe('wrong_resource');
  });

  it('treats the registration id case-insensitively, as DPS does', () => {
    expect(verify(createSas(SCOPE, 'SENSOR-0042', PRIMARY, NOW + 60), { id: 'sensor-0042' })).toBe(0);
  });

  it('rejects a key name other than "registration"', () => {
    const token = createSas(SCOPE, ID, PRIMARY, NOW + 60).replace('skn=registration', 'skn=iothubowner');
    expect(reason(() => verify(token))).toBe('wrong_key_name');
  });

  it('accepts a token without a key name, as the Python SDK signs it and real DPS admits it (issue 23)', () => {
    const token = createSas(SCOPE, ID, PRIMARY, NOW + 60).replace('&skn=registration', '');
    expect(token).not.toContain('skn');
    expect(verify(token)).toBe(0);
    expect(verify(createSas(SCOPE, ID, PRIMARY, NOW + 60))).toBe(0);
  });

  it.each(['', 'Registration', 'device', 'registration '])('refuses a key name present but not "registration": %j', (skn) => {
    const token = createSas(SCOPE, ID, PRIMARY, NOW + 60).replace('skn=registration', `skn=${encodeURIComponent(skn)}`);
    expect(reason(() => verify(token))).toBe('wrong_key_name');
  });

  it('refuses a correctly signed token whose se is more than a day ahead, and accepts one a day ahead', () => {
    expect(reason(() => verify(createSas(SCOPE, ID, PRIMARY, NOW + MAX_SAS_LIFETIME_SECONDS + 1)))).toBe('expiry_too_far');
    expect(reason(() => verify(createSas(SCOPE, ID, PRIMARY, NOW + 10 * 365 * 24 * 3600)))).toBe('expiry_too_far');
    expect(verify(createSas(SCOPE, ID, PRIMARY, NOW + MAX_SAS_LIFETIME_SECONDS))).toBe(0);
  });

  it.each([
    ['no prefix', 'sr=a&sig=b&se=1'],
    ['missing sig', `SharedAccessSignature sr=${SCOPE}/registrations/${ID}&se=${NOW + 60}`],
    ['non-numeric se', `SharedAccessSignature sr=x&sig=AAAA&se=soon`],
    ['sig not base64', `SharedAccessSignature sr=x&sig=%%%&se=1`],
    ['undefined', undefined],
  ])('rejects a malformed token (%s) without echoing it', (_name, token) => {
    try {
      parseSas(token as string | undefined);
      expect.unreachable();
    } catch (err) {
      expect((err as SasError).reason).toBe('malformed');
      if (token) expect((err as Error).message).not.toContain(token);
    }
  });
});
