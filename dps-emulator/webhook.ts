/**
 * The one outbound call the local DPS makes: POST the AllocationRequest to the enrollment's webhook. Never follows
 * redirects (a redirect could lead off loopback; DPS treats it as "any other status" anyway) and never puts the URL
 * (it carries the function key as ?code=) into an error or a log line.
 */
import type { AllocationRequest, WebhookAttempt } from './protocol/allocation.js';

/** Bodies over this are cut: a webhook answer is a hub name, a twin and a small payload. */
const MAX_ANSWER_BYTES = 256 * 1024;

export async function postWebhook(
  url: string,
  body: AllocationRequest,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<WebhookAttempt> {
  const timeout = AbortSignal.timeout(timeoutMs);
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
      redirect: 'manual',
      signal: AbortSignal.any([timeout, signal]),
    });
    const text = await readCapped(res);
    return { kind: 'response', status: res.status, body: text };
  } catch (err) {
    if (timeout.aborted) return { kind: 'network', reason: `no answer within ${timeoutMs} ms` };
    if (signal.aborted) return { kind: 'network', reason: 'local DPS closing' };
    return { kind: 'network', reason: networkReason(err) };
  }
}

async function readCapped(res: Response): Promise<string> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.byteLength;
    if (size > MAX_ANSWER_BYTES) break;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A short cause such as ECONNREFUSED; undici puts it on err.cause. */
function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause;
  if (cause && typeof cause.code === 'string') return cause.code;
  return err instanceof Error ? err.name : 'network error';
}
