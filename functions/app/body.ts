import type { Readable } from 'node:stream';
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

/**
 * The same limits for a Node.js stream (the local host's IncomingMessage), read with 'data' events. Async iteration
 * of a Node stream builds an iterator, end-of-stream listeners and a promise per chunk, a measurable share of a
 * decision's CPU. Over the limit, reading stops (the stream is paused, not drained); the caller answers 413 and closes
 * the connection. A stream that errors or closes before its end is `request_incomplete`, as above.
 */
export function readStreamWithLimit(stream: Readable, declaredLength: string | null | undefined, limit: number): Promise<string> {
  if (declaredLength != null && declaredLength !== '' && Number(declaredLength) > limit) {
    return Promise.reject(new WebhookError('request_too_large', `the request body is over ${limit} bytes`));
  }
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const done = () => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > limit) {
        done();
        stream.pause();
        reject(new WebhookError('request_too_large', `the request body is over ${limit} bytes`));
        return;
      }
      parts.push(chunk);
    };
    const onEnd = () => {
      done();
      resolve(Buffer.concat(parts, size).toString('utf8'));
    };
    const incomplete = (cause?: Error) => {
      done();
      reject(new WebhookError('request_incomplete', 'the request body ended before it was complete (connection closed or reset)', { cause }));
    };
    const onError = (error: Error) => incomplete(error);
    const onClose = () => incomplete();
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}
