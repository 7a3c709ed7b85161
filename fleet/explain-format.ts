/**
 * `fleet explain`'s report as text for an operator. Everything printed comes from an ExplainResult, which holds
 * entry names, kids, digests, tags and claims, never a token or key material.
 */
import { CHECK_TITLES } from '../functions/core/checks.js';
import { REASONS } from '../functions/core/reasons.js';
import { checkRows, PLACEHOLDER_HUB, type EntryReport, type ExplainResult } from './commands/explain.js';
import { DIGEST_TAG } from './keys.js';

/** Printable and short: tags and names come from a store others write to. */
const clean = (text: string, max = 80) => {
  const printable = text.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > max ? `${printable.slice(0, max - 3)}...` : printable;
};

function entryLines(entry: EntryReport): string[] {
  const head = `  ${entry.role.padEnd(7)} ${clean(entry.name).padEnd(40)} `;
  const decides = entry.used ? '   <- the webhook uses this entry' : '';
  if (entry.state === 'absent') return [`${head}absent`];
  if (entry.state === 'unreadable') return [`${head}unusable: ${entry.code} (${clean(entry.message ?? '', 120)})${decides}`];
  const lines = [`${head}${entry.enabled === false ? 'DISABLED' : 'enabled'}${decides}`];
  const pad = ' '.repeat(11);
  if (entry.origin !== undefined) lines.push(`${pad}stored as  ${clean(entry.origin)}`);
  if (entry.enabled === false && (entry.algorithms === undefined || entry.algorithms.length === 0)) {
    lines.push(`${pad}keys       not shown: the store hands out no key of a disabled entry`);
    const listed = entry.listedTags;
    if (listed !== undefined && 'error' in listed && typeof listed.error === 'string') {
      lines.push(`${pad}tags       not listed (${clean(listed.error, 120)})`);
      return lines;
    }
    const tags = Object.entries((listed ?? entry.tags ?? {}) as Record<string, string>);
    const tagged = tags.find(([name]) => name === DIGEST_TAG)?.[1];
    if (tagged !== undefined) lines.push(`${pad}sha256     ${clean(tagged, 64)} (its ${DIGEST_TAG} tag; the key itself is not readable while disabled)`);
    const rest = tags.filter(([name]) => name !== DIGEST_TAG);
    lines.push(`${pad}tags       ${rest.length > 0 ? rest.map(([k, v]) => `${clean(k, 40)}=${clean(v, 60)}`).join(', ') : '(none)'}${listed !== undefined ? ' (listed: a disabled secret\'s GET hands out none)' : ''}`);
    return lines;
  } else {
    lines.push(`${pad}kids       ${entry.kids !== undefined && entry.kids.length > 0 ? entry.kids.map((k) => clean(k, 40)).join(', ') : '(none: the key matches any kid)'}`);
    lines.push(`${pad}algorithms ${entry.algorithms?.join(', ') ?? '(none)'}`);
  }
  if (entry.digest !== undefined) {
    const tagged = entry.tags?.[DIGEST_TAG];
    const against = tagged === undefined ? '' : tagged.toLowerCase() === entry.digest ? ` (matches its ${DIGEST_TAG} tag)` : ` (its ${DIGEST_TAG} tag says ${clean(tagged, 64)}: the value was changed outside fleet import)`;
    lines.push(`${pad}sha256     ${entry.digest}${against}`);
  }
  const tags = Object.entries(entry.tags ?? {}).filter(([name]) => name !== DIGEST_TAG);
  lines.push(`${pad}tags       ${tags.length > 0 ? tags.map(([k, v]) => `${clean(k, 40)}=${clean(v, 60)}`).join(', ') : '(none)'}`);
  return lines;
}

function answerLine(status: number, code: string, hub: string | undefined): string {
  if (status === 200 && hub === PLACEHOLDER_HUB) return `Answer: 200 ${code}: DPS assigns the device to a linked hub (give --linked-hub to see which).`;
  if (status === 200) return `Answer: 200 ${code}: DPS assigns the device to ${hub ?? 'a linked hub'}.`;
  if (status < 429) return `Answer: ${status} ${code}: DPS fails the registration; the device sees status "failed", errorCode 400207 CustomAllocationFailed.`;
  return `Answer: ${status} ${code}: DPS retries the webhook (about 8 minutes) before failing the registration.`;
}

export function formatExplain(result: ExplainResult): string {
  const enrollment = result.group !== undefined ? `enrollment group ${clean(result.group)}` : 'individual enrollment';
  const out = [
    `fleet explain: ${result.registrationId}, ${enrollment}, decided at ${result.at}`,
    `  keys: ${clean(result.store, 200)}`,
    '',
    'Key entries, in the order the webhook tries them:',
    ...result.entries.flatMap(entryLines),
  ];
  const decision = result.decision;
  if (decision === undefined) {
    out.push('');
    if (result.verdict !== undefined) {
      out.push(`Without a token: every token of this device is refused: ${result.verdict.code}.`);
      out.push(`Why: ${REASONS[result.verdict.code].summary}`);
      out.push(`Do: ${result.verdict.hint}`);
    } else {
      const used = result.entries.find((e) => e.used);
      out.push(`Without a token: the ${used?.role ?? 'device'} entry ${clean(used?.name ?? '')} decides, and it is enabled; give the device's token (--token-file FILE, or - for stdin) to run the checks.`);
    }
    return out.join('\n');
  }
  out.push('', "Checks, the webhook's own, in order:");
  for (const row of checkRows(decision.checks)) {
    const name = row.check.padEnd(14);
    if (row.outcome === 'not-reached') {
      out.push(`  --    ${name}not reached`);
      continue;
    }
    if (row.outcome === 'fail') {
      out.push(`  FAIL  ${name}${row.code}: ${clean(row.detail ?? '', 160)}`);
      continue;
    }
    const detail = row.detail !== undefined ? ` [${clean(row.detail, 100)}]` : '';
    out.push(`  ${row.outcome === 'pass' ? 'pass' : 'skip'}  ${name}${row.outcome === 'skip' ? clean(row.detail ?? '', 160) : `${CHECK_TITLES[row.check]}${detail}`}`);
  }
  out.push('', answerLine(decision.status, decision.code, decision.hub));
  if (decision.status !== 200) out.push(`Why: ${REASONS[decision.code].summary}`);
  out.push(`Do: ${decision.hint}`);
  if (decision.facts.length > 0) {
    const width = Math.max(...decision.facts.map((f) => f.label.length));
    out.push('Facts:');
    for (const fact of decision.facts) out.push(`  ${fact.label.padEnd(width)}  ${clean(fact.value, 200)}`);
  }
  if (decision.replayNote !== undefined) out.push(`Note: ${decision.replayNote}.`);
  return out.join('\n');
}
