import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { MAX_REQUEST_BYTES } from '../core/policy.js';
import type { Webhook } from './compose.js';
import { readBodyWithLimit } from './body.js';

/** Azure Functions v4 HTTP trigger -> webhook -> HttpResponseInit, and one log line per decision. Nothing else. */
export function toFunctionsHandler(webhook: Webhook | Promise<Webhook>) {
  return async function handle(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
    const answer = await (await webhook).handle({
      contentType: request.headers.get('content-type') ?? undefined,
      body: () => readBodyWithLimit(request.body, request.headers.get('content-length'), MAX_REQUEST_BYTES),
    });
    const line = JSON.stringify({ event: 'validatejwt', ...answer.log });
    if (answer.status >= 500) context.error(line);
    else if (answer.status >= 400) context.warn(line);
    else context.log(line);
    return { status: answer.status, headers: answer.headers, jsonBody: answer.body };
  };
}
