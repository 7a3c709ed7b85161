/** The configured activation form: declaration errors name their path; validation and limits (twin, Key Vault). */
import { describe, expect, it } from 'vitest';
import { checkTagLimits, parseFieldConfig, validateForm } from '../../portal/core/fields.js';
import { FIELDS } from './helpers.js';

const config = (fields: unknown[]) => JSON.stringify({ fields });

describe('field declaration', () => {
  it.each([
    [config([{ name: 'a.b', label: 'x' }]), 'PORTAL_FIELDS.fields[0].name must be 1-64 characters'],
    [config([{ name: 'has space', label: 'x' }]), 'fields[0].name'],
    [config([{ name: '$x', label: 'x' }]), 'fields[0].name'],
    [config([{ name: 'public-key-sha256', label: 'x' }]), 'is reserved for the key store'],
    [config([{ name: 'a', label: 'x' }, { name: 'A', label: 'y' }]), 'fields[1].name "A" is declared twice'],
    [config([{ name: 'a', label: '' }]), 'fields[0].label must be a non-empty string'],
    [config([{ name: 'a', label: 'x', target: 'reported' }]), 'fields[0].target must be "tag" or "desired"'],
    [config([{ name: 'a', label: 'x', pattern: '(' }]), 'fields[0].pattern is not a valid regular expression'],
    [config([{ name: 'a', label: 'x', pattern: 'x', enum: ['x'] }]), 'has both pattern and enum'],
    [config([{ name: 'a', label: 'x', maxLength: 300 }]), 'maxLength must be an integer 1-256'],
    [config(Array.from({ length: 14 }, (_, i) => ({ name: `f${i}`, label: 'x' }))), 'has 14 entries; at most 13'],
    ['{', 'PORTAL_FIELDS is not valid JSON'],
  ])('refuses %s', (text, message) => {
    expect(() => parseFieldConfig(text)).toThrow(message);
  });

  it('allows the same name once as a tag and once as a desired property (different store tags)', () => {
    expect(parseFieldConfig(config([{ name: 'mode', label: 'a' }, { name: 'mode', label: 'b', target: 'desired' }])).fields).toHaveLength(2);
  });
});

describe('form validation', () => {
  const valid = { location: 'Hall 3', chassis: 'CH-000001', telemetryMode: 'eco' };

  it('maps fields to store tags: a tag by name, a desired property as desired.<name>; other tags stay', () => {
    const outcome = validateForm(FIELDS, valid, { 'public-key-sha256': 'ab', location: 'old' });
    expect(outcome).toEqual({ ok: true, values: valid, tags: { 'public-key-sha256': 'ab', location: 'Hall 3', chassis: 'CH-000001', 'desired.telemetryMode': 'eco' } });
  });

  it('names every failing field: required, pattern (whole value), enum, control characters', () => {
    const outcome = validateForm(FIELDS, { location: 'Hall\u00073', chassis: 'xCH-000001', telemetryMode: 'turbo' }, {});
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect(outcome.errors).toEqual({
      location: 'Installation site must not contain control characters.',
      chassis: 'Chassis number does not have the expected form (CH- and six digits).',
      telemetryMode: 'Telemetry mode must be one of: eco, standard.',
    });
    const missing = validateForm(FIELDS, {}, {});
    expect(missing.ok ? {} : missing.errors).toMatchObject({ location: 'Installation site is required.' });
  });

  it('holds Key Vault 15 tags / 256 characters and the twin 8 KB tags limit', () => {
    expect(checkTagLimits(Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`t${i}`, 'v'])))).toContain('Key Vault allows 15');
    expect(checkTagLimits({ a: 'x'.repeat(257) })).toContain("Key Vault's 256 characters");
    expect(checkTagLimits(Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`t${i}`.padEnd(250, 'n'), 'é'.repeat(256)])))).toContain('IoT Hub allows 8192');
    expect(checkTagLimits({ a: 'b' })).toBeUndefined();
    const tooMany = validateForm(FIELDS, valid, Object.fromEntries(Array.from({ length: 13 }, (_, i) => [`t${i}`, 'v'])));
    expect(tooMany.ok ? undefined : tooMany.errors['']).toContain('Key Vault allows 15');
  });
});
