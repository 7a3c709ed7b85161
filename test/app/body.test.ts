import { PassThrough } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { readStreamWithLimit } from '../../functions/app/body.js';
import { WebhookError } from '../../functions/core/reasons.js';

const code = (error: unknown) => (error instanceof WebhookError ? error.code : String(error));

describe('readStreamWithLimit (the local host reads its request bodies with it)', () => {
  test('joins the chunks of a UTF-8 body, a character split across chunks included', async () => {
    const stream = new PassThrough();
    const body = readStreamWithLimit(stream, undefined, 100);
    const bytes = Buffer.from('{"é":1}');
    stream.write(bytes.subarray(0, 3));
    stream.end(bytes.subarray(3));
    await expect(body).resolves.toBe('{"é":1}');
  });

  test('refuses a declared length over the limit without reading, and a body that grows past it, reading no further', async () => {
    const untouched = new PassThrough();
    await expect(readStreamWithLimit(untouched, '101', 100).catch(code)).resolves.toBe('request_too_large');
    expect(untouched.listenerCount('data')).toBe(0);

    const stream = new PassThrough();
    const body = readStreamWithLimit(stream, undefined, 100);
    stream.write(Buffer.alloc(60));
    stream.write(Buffer.alloc(60));
    await expect(body.catch(code)).resolves.toBe('request_too_large');
    expect(stream.isPaused()).toBe(true);
    expect(stream.listenerCount('data')).toBe(0);
  });

  test('a body exactly at the limit is read', async () => {
    const stream = new PassThrough();
    const body = readStreamWithLimit(stream, '100', 100);
    stream.end(Buffer.alloc(100, 0x20));
    await expect(body).resolves.toHaveLength(100);
  });

  test('a stream closed before its end (the client went away) is request_incomplete, and leaves no listener behind', async () => {
    const stream = new PassThrough();
    const body = readStreamWithLimit(stream, undefined, 100);
    stream.write('{"a":');
    stream.destroy();
    await expect(body).rejects.toMatchObject({ code: 'request_incomplete' });
    expect(stream.listenerCount('data') + stream.listenerCount('end')).toBe(0);
  });
});
