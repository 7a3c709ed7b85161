/**
 * The activation form, configured not coded: the operator declares the fields in one JSON document
 * (PORTAL_FIELDS or the file PORTAL_FIELDS_FILE); the form, its validation and the store tags follow from it.
 *
 * Where a value lands (CONTRACTS item 2): target "tag" -> store tag `<name>` -> twin `tags.<name>`; target "desired" ->
 * store tag `desired.<name>` -> twin `properties.desired.<name>`.
 */

export type FieldTarget = 'tag' | 'desired';

export interface FieldSpec {
  readonly name: string;
  readonly label: string;
  readonly required: boolean;
  /** Whole-value match (anchored here). */
  readonly pattern?: RegExp;
  /** The source text of `pattern`, for the HTML `pattern` attribute. */
  readonly patternSource?: string;
  readonly enum?: readonly string[];
  readonly maxLength: number;
  readonly target: FieldTarget;
  readonly hint?: string;
}

export interface FieldConfig {
  readonly fields: readonly FieldSpec[];
}

/** Key Vault: at most 15 tags per secret, names and values at most 256 characters (azure-cli-facts §3, K9). */
export const KEY_VAULT_MAX_TAGS = 15;
export const KEY_VAULT_MAX_TAG_CHARS = 256;
/**
 * Store tags the portal never writes nor removes: the key digest and az's file-encoding (CONTRACTS item 1) take up
 * to two of the 15 Key Vault tags, so a form has at most 13 fields.
 */
export const RESERVED_TAGS: ReadonlySet<string> = new Set(['public-key-sha256', 'file-encoding', 'provisioning']);
export const MAX_FIELDS = KEY_VAULT_MAX_TAGS - 2;
/** IoT Hub twin: tags at most 8 KB, desired properties 32 KB, counted as key + value length (azure-cli-facts §4.3). */
export const TWIN_TAGS_MAX_BYTES = 8 * 1024;
export const TWIN_DESIRED_MAX_BYTES = 32 * 1024;
/**
 * Field names: IoT Hub twin key rules (no '.', '$', space or controls; ':', '@', '+' allowed, CONTRACTS item 2),
 * narrowed to printable ASCII so a name is also a legal Key Vault tag name and an HTML form field name.
 */
const FIELD_NAME = /^[A-Za-z0-9_\-:@+]{1,64}$/;
const DESIRED_PREFIX = 'desired.';

export class FieldConfigError extends TypeError {
  constructor(readonly path: string, message: string) {
    super(`${path} ${message}`);
    this.name = 'FieldConfigError';
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses and checks the field declaration; every mistake names its JSON path. */
export function parseFieldConfig(text: string, source = 'PORTAL_FIELDS'): FieldConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new FieldConfigError(source, 'is not valid JSON');
  }
  if (!isRecord(doc) || !Array.isArray(doc.fields)) throw new FieldConfigError(source, 'must be an object {"fields": [...]}');
  if (doc.fields.length > MAX_FIELDS) {
    throw new FieldConfigError(`${source}.fields`, `has ${doc.fields.length} entries; at most ${MAX_FIELDS} (Key Vault allows 15 tags, 2 are kept for the key's own)`);
  }
  const seen = new Set<string>();
  const fields = doc.fields.map((raw, i): FieldSpec => {
    const at = `${source}.fields[${i}]`;
    if (!isRecord(raw)) throw new FieldConfigError(at, 'must be an object');
    const { name, label, required = false, pattern, enum: choices, target = 'tag', maxLength = KEY_VAULT_MAX_TAG_CHARS, hint } = raw;
    if (typeof name !== 'string' || !FIELD_NAME.test(name)) {
      throw new FieldConfigError(`${at}.name`, 'must be 1-64 characters of A-Z a-z 0-9 _ - : @ + (a twin key has no ".", "$" or space)');
    }
    if (RESERVED_TAGS.has(name.toLowerCase())) throw new FieldConfigError(`${at}.name`, `"${name}" is reserved for the key store`);
    if (target !== 'tag' && target !== 'desired') throw new FieldConfigError(`${at}.target`, 'must be "tag" or "desired"');
    const storeName = target === 'desired' ? DESIRED_PREFIX + name : name;
    // Key Vault tag names are case-insensitive in practice; refuse two fields that would collide.
    if (seen.has(storeName.toLowerCase())) throw new FieldConfigError(`${at}.name`, `"${name}" is declared twice for the same target`);
    seen.add(storeName.toLowerCase());
    if (typeof label !== 'string' || label.trim() === '' || label.length > 200) throw new FieldConfigError(`${at}.label`, 'must be a non-empty string of at most 200 characters');
    if (typeof required !== 'boolean') throw new FieldConfigError(`${at}.required`, 'must be true or false');
    if (typeof maxLength !== 'number' || !Number.isInteger(maxLength) || maxLength < 1 || maxLength > KEY_VAULT_MAX_TAG_CHARS) {
      throw new FieldConfigError(`${at}.maxLength`, `must be an integer 1-${KEY_VAULT_MAX_TAG_CHARS} (a Key Vault tag value holds at most 256 characters)`);
    }
    if (hint !== undefined && typeof hint !== 'string') throw new FieldConfigError(`${at}.hint`, 'must be a string');
    if (pattern !== undefined && choices !== undefined) throw new FieldConfigError(at, 'has both pattern and enum; choose one');
    let compiled: RegExp | undefined;
    if (pattern !== undefined) {
      if (typeof pattern !== 'string' || pattern === '') throw new FieldConfigError(`${at}.pattern`, 'must be a non-empty regular expression string');
      try {
        // Anchored: the whole value must match, as the HTML pattern attribute does.
        compiled = new RegExp(`^(?:${pattern})$`, 'u');
      } catch {
        throw new FieldConfigError(`${at}.pattern`, 'is not a valid regular expression');
      }
    }
    if (choices !== undefined) {
      if (!Array.isArray(choices) || choices.length === 0 || !choices.every((c) => typeof c === 'string' && c !== '' && c.length <= maxLength)) {
        throw new FieldConfigError(`${at}.enum`, `must be a non-empty array of non-empty strings of at most ${maxLength} characters`);
      }
    }
    return {
      name,
      label,
      required,
      maxLength,
      target,
      ...(compiled !== undefined && { pattern: compiled, patternSource: pattern as string }),
      ...(choices !== undefined && { enum: choices as string[] }),
      ...(hint !== undefined && { hint }),
    };
  });
  return { fields };
}

/** The store tag a field writes (CONTRACTS item 2). */
export function storeTagName(field: FieldSpec): string {
  return field.target === 'desired' ? DESIRED_PREFIX + field.name : field.name;
}

export type FieldErrors = Readonly<Record<string, string>>;

export type FormOutcome =
  | { readonly ok: true; readonly tags: Readonly<Record<string, string>>; readonly values: Readonly<Record<string, string>> }
  | { readonly ok: false; readonly errors: FieldErrors; readonly values: Readonly<Record<string, string>> };

// C0 and C1 controls: not allowed in twin values' counting nor wanted in a tag.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;

/** UTF-8 length, as IoT Hub counts twin strings. */
const utf8 = (s: string): number => Buffer.byteLength(s, 'utf8');

/**
 * Checks the submitted form against the fields and, when every field passes, merges the values into the key's
 * current tags: a field left empty removes its tag, tags the form does not declare stay as they are.
 */
export function validateForm(config: FieldConfig, form: Readonly<Record<string, string>>, currentTags: Readonly<Record<string, string>>): FormOutcome {
  const errors: Record<string, string> = {};
  const values: Record<string, string> = {};
  for (const field of config.fields) {
    const value = (form[field.name] ?? '').trim();
    values[field.name] = value;
    if (value === '') {
      if (field.required) errors[field.name] = `${field.label} is required.`;
      continue;
    }
    if (CONTROL.test(value)) errors[field.name] = `${field.label} must not contain control characters.`;
    else if (value.length > field.maxLength) errors[field.name] = `${field.label} must be at most ${field.maxLength} characters.`;
    else if (field.enum !== undefined && !field.enum.includes(value)) errors[field.name] = `${field.label} must be one of: ${field.enum.join(', ')}.`;
    else if (field.pattern !== undefined && !field.pattern.test(value)) {
      errors[field.name] = `${field.label} does not have the expected form${field.hint !== undefined ? ` (${field.hint})` : ''}.`;
    }
  }
  if (Object.keys(errors).length > 0) return { ok: false, errors, values };

  const tags: Record<string, string> = { ...currentTags };
  for (const field of config.fields) {
    const name = storeTagName(field);
    // Drop any case variant first: the vault treats tag names case-insensitively.
    for (const existing of Object.keys(tags)) if (existing.toLowerCase() === name.toLowerCase()) delete tags[existing];
    const value = values[field.name] ?? '';
    if (value !== '') tags[name] = value;
  }
  const limitError = checkTagLimits(tags);
  if (limitError !== undefined) return { ok: false, errors: { '': limitError }, values };
  return { ok: true, tags, values };
}

/** Key Vault's tag limits and IoT Hub's twin size limits over the tags that would be written. */
export function checkTagLimits(tags: Readonly<Record<string, string>>): string | undefined {
  const entries = Object.entries(tags);
  if (entries.length > KEY_VAULT_MAX_TAGS) return `The key would carry ${entries.length} tags; Key Vault allows ${KEY_VAULT_MAX_TAGS}.`;
  let tagBytes = 0;
  let desiredBytes = 0;
  for (const [name, value] of entries) {
    if (name.length > KEY_VAULT_MAX_TAG_CHARS || value.length > KEY_VAULT_MAX_TAG_CHARS) {
      return `Tag ${name.slice(0, 40)} is longer than Key Vault's ${KEY_VAULT_MAX_TAG_CHARS} characters.`;
    }
    if (RESERVED_TAGS.has(name)) continue;
    if (name.startsWith(DESIRED_PREFIX)) desiredBytes += utf8(name.slice(DESIRED_PREFIX.length)) + utf8(value);
    else tagBytes += utf8(name) + utf8(value);
  }
  if (tagBytes > TWIN_TAGS_MAX_BYTES) return `The twin tags would take ${tagBytes} bytes; IoT Hub allows ${TWIN_TAGS_MAX_BYTES}.`;
  if (desiredBytes > TWIN_DESIRED_MAX_BYTES) return `The desired properties would take ${desiredBytes} bytes; IoT Hub allows ${TWIN_DESIRED_MAX_BYTES}.`;
  return undefined;
}
