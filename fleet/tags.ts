/**
 * A row's tags, under the rules every writer of the key store follows (CONTRACTS item 2; register-key.sh): a tag
 * becomes twin `tags.<name>`, or `properties.desired.<prop>` when named `desired.<prop>`; names follow IoT Hub's twin
 * key rules (no `.`, `$`, space or C0/C1 control; `:`, `@`, `+` allowed) [azure-cli-facts.md §4.3 H1]; Key Vault
 * allows 15 tags of at most 256 characters per name and value [§3 K9], one of which is the digest tag.
 */
import { twinKeyProblem } from '../functions/core/twin.js';
import { DIGEST_TAG } from './keys.js';

export const MAX_ROW_TAGS = 14;
const MAX_TAG_CHARS = 256;
const DESIRED = 'desired.';
/** Names the tools write or the webhook reserves: a manifest may not set them. */
const RESERVED = new Set([DIGEST_TAG, 'file-encoding', 'provisioning']);

export class TagProblem {
  constructor(
    readonly reason: 'tags_invalid' | 'tags_too_many' | 'tag_reserved',
    readonly message: string,
  ) {}
}

/** `k=v;k=v` (CSV) or an object of strings (JSON Lines) into checked tags. */
export function parseTags(given: unknown): Record<string, string> | TagProblem {
  if (given === undefined || given === null || given === '') return {};
  let pairs: [string, unknown][];
  if (typeof given === 'string') {
    pairs = [];
    for (const part of given.split(';')) {
      if (part.trim() === '') continue;
      const eq = part.indexOf('=');
      if (eq < 0) return new TagProblem('tags_invalid', `"${clip(part)}" is not name=value (tags are k=v;k=v)`);
      pairs.push([part.slice(0, eq).trim(), part.slice(eq + 1)]);
    }
  } else if (typeof given === 'object' && !Array.isArray(given)) {
    pairs = Object.entries(given as Record<string, unknown>);
  } else {
    return new TagProblem('tags_invalid', 'not k=v;k=v (CSV) or an object of strings (JSON Lines)');
  }
  if (pairs.length > MAX_ROW_TAGS) {
    return new TagProblem('tags_too_many', `${pairs.length} tags; at most ${MAX_ROW_TAGS} (Key Vault allows 15, one is ${DIGEST_TAG})`);
  }
  const tags: Record<string, string> = {};
  const lower = new Set<string>();
  for (const [name, value] of pairs) {
    const problem = checkTag(name, value);
    if (problem !== undefined) return problem;
    if (lower.has(name.toLowerCase())) return new TagProblem('tags_invalid', `tag "${clip(name)}" is given twice`);
    lower.add(name.toLowerCase());
    tags[name] = value as string;
  }
  return tags;
}

function checkTag(name: string, value: unknown): TagProblem | undefined {
  if (name.length === 0) return new TagProblem('tags_invalid', 'a tag has an empty name');
  if (name.length > MAX_TAG_CHARS) return new TagProblem('tags_invalid', `tag name "${clip(name)}" is over ${MAX_TAG_CHARS} characters`);
  if (RESERVED.has(name.toLowerCase())) return new TagProblem('tag_reserved', `tag "${name}" is reserved (written by the tools or the webhook)`);
  const twinKey = name.startsWith(DESIRED) ? name.slice(DESIRED.length) : name;
  // The webhook's own rule (functions/core/twin.ts), so a row the import accepts is never dropped from the twin.
  const keyProblem = twinKeyProblem(twinKey);
  if (keyProblem !== undefined) {
    return new TagProblem(
      'tags_invalid',
      `tag name "${clip(name)}" is not a twin key (${keyProblem}): no ".", "$", space or control character${name.startsWith(DESIRED) ? ` after "${DESIRED}"` : ` (only the "${DESIRED}<prop>" prefix may have a dot)`}`,
    );
  }
  if (typeof value !== 'string') return new TagProblem('tags_invalid', `tag "${clip(name)}" must have a string value`);
  if (value.length > MAX_TAG_CHARS) return new TagProblem('tags_invalid', `the value of tag "${clip(name)}" is over ${MAX_TAG_CHARS} characters`);
  return undefined;
}

function clip(text: string): string {
  // eslint-disable-next-line no-control-regex
  const shown = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return shown.length > 40 ? `${shown.slice(0, 40)}...` : shown;
}
