import { WebhookError } from '../core/reasons.js';

/**
 * Reads a request body up to `limit` bytes. A declared length over the limit is refused before reading; a body
 * that grows past it is cut off there, so an oversized request is never held whole in memory. A body that cannot be
 * read to its end (the caller hung up or reset mid-body) is `request_incomplete`: the caller's fault, never a 500.
 */
export async function readBodyWithLimit(
  chunks: AsyncIterable<Uint8Array> | null | undefined,
  declaredLength: string | null | undefined,
  limit: number,
): Promise<string> {
  if (declaredLength != null && declaredLength !== '' && Number(declaredLength) > limit) {
    throw new WebhookError('request_too_large', `the request body is over ${limit} bytes`);
  }
  if (chunks == null) return '';
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of chunks) {
      size += chunk.byteLength;
      if (size > limit) throw new WebhookError('request_too_large', `the request body is over ${limit} bytes`);
      parts.push(chunk);
    }
  } catch (error) {
    if (error instanceof WebhookError) throw error;
    throw new WebhookError('request_incomplete', 'the request body ended before it was complete (connection closed or reset)', { cause: error });
  }
  return Buffer.concat(parts, size).toString('utf8');
}
