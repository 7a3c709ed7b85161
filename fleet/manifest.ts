/**
 * Reading a manifest: CSV with a header line, or JSON Lines (one object a line), with the same field names. This
 * file only splits the text into rows and fields; what a field must hold is validate.ts's business. A malformed row
 * is reported by line, never quoted (it may hold a key).
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { FleetError } from './errors.js';

export const MANIFEST_FIELDS = ['registrationId', 'groupId', 'publicKey', 'publicKeyFile', 'tags', 'disabled'] as const;
export type ManifestField = (typeof MANIFEST_FIELDS)[number];
export type ManifestFormat = 'csv' | 'jsonl';

/** One row as written: CSV fields are strings; JSON Lines fields keep their JSON type. Empty CSV cells are absent. */
export interface ManifestRow {
  readonly line: number;
  readonly values: Partial<Record<ManifestField, unknown>>;
}

/** A row that could not even be split into fields. */
export interface MalformedRow {
  readonly line: number;
  readonly field: string;
  readonly problem: string;
}

export interface Manifest {
  readonly format: ManifestFormat;
  readonly rows: ManifestRow[];
  readonly malformed: MalformedRow[];
}

export function formatOf(file: string, given?: string): ManifestFormat {
  if (given === 'csv' || given === 'jsonl') return given;
  const ext = extname(file).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  throw new FleetError('usage', `--manifest ${file}: cannot tell the format from the extension; name it .csv or .jsonl, or pass --format csv|jsonl`);
}

export async function readManifest(file: string, format: ManifestFormat): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new FleetError('manifest', `--manifest ${file}: ${code === 'ENOENT' ? 'no such file' : `cannot read it (${code ?? 'error'})`}`);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a byte order mark from a spreadsheet export
  return format === 'csv' ? parseCsv(text, file) : parseJsonLines(text);
}

const KNOWN = new Set<string>(MANIFEST_FIELDS);

export function parseJsonLines(text: string): Manifest {
  const rows: ManifestRow[] = [];
  const malformed: MalformedRow[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, index) => {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      malformed.push({ line, field: 'row', problem: 'not valid JSON' });
      return;
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      malformed.push({ line, field: 'row', problem: 'not a JSON object' });
      return;
    }
    const unknown = Object.keys(parsed).filter((k) => !KNOWN.has(k));
    if (unknown.length > 0) {
      malformed.push({ line, field: unknown[0]!.slice(0, 40), problem: `not a manifest field (expected ${MANIFEST_FIELDS.join(', ')})` });
      return;
    }
    rows.push({ line, values: parsed as ManifestRow['values'] });
  });
  return { format: 'jsonl', rows, malformed };
}

/** RFC 4180 CSV: quoted fields may hold commas, "" and line breaks (an inline PEM). Line numbers are 1-based. */
export function parseCsv(text: string, file = 'manifest'): Manifest {
  const records = splitCsv(text);
  const header = records.shift();
  if (header === undefined || header.error !== undefined || header.fields.every((f) => f.trim() === '')) {
    throw new FleetError('manifest', `${file}: line 1 must be the header (${MANIFEST_FIELDS.join(',')})`);
  }
  const columns = header.fields.map((f) => f.trim());
  const seen = new Set<string>();
  for (const column of columns) {
    if (!KNOWN.has(column)) throw new FleetError('manifest', `${file}: line 1: unknown column "${column.slice(0, 40)}" (expected ${MANIFEST_FIELDS.join(', ')})`);
    if (seen.has(column)) throw new FleetError('manifest', `${file}: line 1: column "${column}" appears twice`);
    seen.add(column);
  }
  const rows: ManifestRow[] = [];
  const malformed: MalformedRow[] = [];
  for (const record of records) {
    if (record.error !== undefined) {
      malformed.push({ line: record.line, field: 'row', problem: record.error });
      continue;
    }
    if (record.fields.length === 1 && record.fields[0] === '') continue; // a blank line
    if (record.fields.length !== columns.length) {
      malformed.push({ line: record.line, field: 'row', problem: `${record.fields.length} fields; the header has ${columns.length}` });
      continue;
    }
    const values: Record<string, string> = {};
    columns.forEach((column, i) => {
      const value = record.fields[i]!;
      if (value !== '') values[column] = value;
    });
    rows.push({ line: record.line, values });
  }
  return { format: 'csv', rows, malformed };
}

interface CsvRecord {
  readonly line: number;
  readonly fields: string[];
  readonly error?: string;
}

function splitCsv(text: string): CsvRecord[] {
  const records: CsvRecord[] = [];
  let fields: string[] = [];
  let field = '';
  let line = 1;
  let recordLine = 1;
  let quoted = false;
  let wasQuoted = false;
  let error: string | undefined;
  const endRecord = () => {
    fields.push(field);
    records.push({ line: recordLine, fields, ...(error !== undefined && { error }) });
    fields = [];
    field = '';
    wasQuoted = false;
    error = undefined;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else {
        if (c === '\n') line++;
        if (c !== '\r') field += c;
      }
      continue;
    }
    if (c === '"') {
      if (field === '' && !wasQuoted) {
        quoted = true;
        wasQuoted = true;
      } else error ??= 'a stray quote (quote the whole field and double the quotes inside)';
    } else if (c === ',') {
      fields.push(field);
      field = '';
      wasQuoted = false;
    } else if (c === '\n') {
      endRecord();
      line++;
      recordLine = line;
    } else if (c !== '\r') {
      if (wasQuoted) error ??= 'text after a closing quote';
      field += c;
    }
  }
  if (quoted) error ??= 'a quoted field that is never closed';
  if (field !== '' || fields.length > 0 || error !== undefined) endRecord();
  return records;
}
