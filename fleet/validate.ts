/**
 * Every row checked before anything is written: the id (the webhook's DPS rule), duplicates (ids are
 * case-insensitive: compared by the secret name the webhook looks up, functions/keys/names.ts), the key
 * (keys.ts), the tags (tags.ts) and `disabled`. A refusal names the line, the field and the reason; never a key.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { isRegistrationId } from '../functions/core/request.js';
import { deviceSecretName, groupSecretName } from '../functions/keys/names.js';
import { KeyProblem, prepareKey, type KeyReason } from './keys.js';
import type { Manifest, ManifestRow } from './manifest.js';
import { parseTags, TagProblem } from './tags.js';

export type RefusalReason =
  | 'row_malformed'
  | 'id_missing'
  | 'id_ambiguous'
  | 'id_invalid'
  | 'duplicate_id'
  | 'key_missing'
  | 'key_ambiguous'
  | 'key_file_unreadable'
  | KeyReason
  | TagProblem['reason']
  | 'disabled_invalid';

export interface PlannedRow {
  readonly line: number;
  readonly kind: 'device' | 'group';
  readonly id: string;
  readonly secretName: string;
  readonly pem: string;
  readonly digest: string;
  /** The row's own tags (the digest tag is added when writing). */
  readonly tags: Readonly<Record<string, string>>;
  readonly enabled: boolean;
}

export interface Refusal {
  readonly line: number;
  readonly id?: string;
  readonly secretName?: string;
  readonly field: string;
  readonly reason: RefusalReason;
  readonly message: string;
}

export interface ValidateOptions {
  /** Directory `publicKeyFile` paths are relative to (the manifest's). */
  readonly baseDir: string;
  /** JWS algorithms the webhook accepts (its JWT_ALGORITHMS); default ES256. */
  readonly algorithms: readonly string[];
}

export interface Validated {
  readonly planned: PlannedRow[];
  readonly refused: Refusal[];
}

export async function validateManifest(manifest: Manifest, options: ValidateOptions): Promise<Validated> {
  const refused: Refusal[] = manifest.malformed.map((m) => ({ line: m.line, field: m.field, reason: 'row_malformed' as const, message: m.problem }));
  const candidates: PlannedRow[] = [];
  for (const row of manifest.rows) {
    const outcome = await validateRow(row, options);
    if ('reason' in outcome) refused.push(outcome);
    else candidates.push(outcome);
  }
  // The same device twice: which key is right cannot be told, so every occurrence is refused.
  const byName = new Map<string, PlannedRow[]>();
  for (const row of candidates) byName.set(row.secretName, [...(byName.get(row.secretName) ?? []), row]);
  const planned: PlannedRow[] = [];
  for (const rows of byName.values()) {
    if (rows.length === 1) {
      planned.push(rows[0]!);
      continue;
    }
    for (const row of rows) {
      const others = rows.filter((r) => r !== row).map((r) => r.line).join(', ');
      refused.push({
        line: row.line,
        id: row.id,
        secretName: row.secretName,
        field: row.kind === 'device' ? 'registrationId' : 'groupId',
        reason: 'duplicate_id',
        message: `${row.id} is also on line ${others} (ids are case-insensitive)`,
      });
    }
  }
  planned.sort((a, b) => a.line - b.line);
  refused.sort((a, b) => a.line - b.line);
  return { planned, refused };
}

async function validateRow(row: ManifestRow, options: ValidateOptions): Promise<PlannedRow | Refusal> {
  const { line, values } = row;
  const refuse = (field: string, reason: RefusalReason, message: string, id?: string, secretName?: string): Refusal => ({
    line,
    field,
    reason,
    message,
    ...(id !== undefined && { id }),
    ...(secretName !== undefined && { secretName }),
  });

  const registrationId = values.registrationId;
  const groupId = values.groupId;
  if (registrationId !== undefined && groupId !== undefined) return refuse('registrationId', 'id_ambiguous', 'registrationId and groupId are both given; a row is one device or one group');
  if (registrationId === undefined && groupId === undefined) return refuse('registrationId', 'id_missing', 'missing (or groupId for an enrollment group)');
  const kind = registrationId !== undefined ? 'device' : 'group';
  const idField = kind === 'device' ? 'registrationId' : 'groupId';
  const id = (registrationId ?? groupId) as unknown;
  if (typeof id !== 'string' || !isRegistrationId(id)) {
    const shown = typeof id === 'string' ? `"${id.slice(0, 40).replace(/[^\x20-\x7e]/g, '?')}${id.length > 40 ? '...' : ''}"` : 'the value';
    return refuse(idField, 'id_invalid', `${shown} is not a DPS id: 1-128 of A-Z a-z 0-9 - . _ : ending in a letter, digit or -`);
  }
  const secretName = kind === 'device' ? deviceSecretName(id) : groupSecretName(id);

  let given: unknown;
  if (values.publicKey !== undefined && values.publicKeyFile !== undefined) {
    return refuse('publicKey', 'key_ambiguous', 'publicKey and publicKeyFile are both given; give one', id, secretName);
  }
  if (values.publicKeyFile !== undefined) {
    if (typeof values.publicKeyFile !== 'string') return refuse('publicKeyFile', 'key_file_unreadable', 'must be a path', id, secretName);
    const file = isAbsolute(values.publicKeyFile) ? values.publicKeyFile : resolve(options.baseDir, values.publicKeyFile);
    try {
      given = await readFile(file, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      return refuse('publicKeyFile', 'key_file_unreadable', `${values.publicKeyFile}: ${code === 'ENOENT' ? 'no such file' : `cannot read it (${code ?? 'error'})`}`, id, secretName);
    }
  } else if (values.publicKey !== undefined) {
    given = values.publicKey;
  } else {
    return refuse('publicKey', 'key_missing', 'missing (or publicKeyFile)', id, secretName);
  }
  const keyField = values.publicKeyFile !== undefined ? 'publicKeyFile' : 'publicKey';
  const key = await prepareKey(given, options.algorithms);
  if (key instanceof KeyProblem) return refuse(keyField, key.reason, key.message, id, secretName);

  const tags = parseTags(values.tags);
  if (tags instanceof TagProblem) return refuse('tags', tags.reason, tags.message, id, secretName);

  const disabled = parseBoolean(values.disabled);
  if (disabled === undefined) return refuse('disabled', 'disabled_invalid', 'must be true or false', id, secretName);

  return { line, kind, id, secretName, pem: key.pem, digest: key.digest, tags, enabled: !disabled };
}

function parseBoolean(value: unknown): boolean | undefined {
  if (value === undefined || value === null) return false;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') {
    const v = value.trim().toLowerCase();
    if (v === 'true') return true;
    if (v === 'false' || v === '') return false;
  }
  return undefined;
}
