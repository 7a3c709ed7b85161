import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { MAX_REQUEST_BYTES } from '../core/policy.js';
import { REASONS } from '../core/reasons.js';
import type { WebhookHandler } from './compose.js';
import { readBodyWithLimit } from './body.js';

/**
 * Azure Functions v4 HTTP trigger -> webhook -> HttpResponseInit, and one log line per decision. Nothing else.
 * The body is read from `request.body`, a stream when HTTP streams are on (validatejwt.ts), so the 64 KiB limit is
 * enforced while reading. The answer is serialized here, before the line is logged, so the line states the status
 * the host really sends (a `jsonBody` would be serialized by the library after this handler returned).
 */
export function toFunctionsHandler(webhook: WebhookHandler | Promise<WebhookHandler>) {
  return async function handle(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
    // The host's trace context, so the decision's trace is a child of the invocation's request in Application Insights.
    const traceParent = context.traceContext?.traceParent ?? undefined;
    const answer = await (await webhook).handle({
      contentType: request.headers.get('content-type') ?? undefined,
      body: () => readBodyWithLimit(request.body, request.headers.get('content-length'), MAX_REQUEST_BYTES),
      ...(traceParent !== undefined && { traceParent }),
    });
    let status = answer.status;
    let headers = answer.headers;
    let record: Record<string, unknown> = { event: 'validatejwt', ...answer.log };
    let body: string;
    try {
      body = JSON.stringify(answer.body);
    } catch (error) {
      status = 500;
      headers = { 'content-type': 'application/json; charset=utf-8' };
      body = JSON.stringify({ code: 'internal_error', message: REASONS.internal_error.summary });
      record = { ...record, outcome: 'error', code: 'internal_error', status, error: error instanceof Error ? error.name : typeof error };
    }
    const line = JSON.stringify(record);
    if (status >= 500) context.error(line);
    else if (status >= 400) context.warn(line);
    else context.log(line);
    return { status, headers: { ...headers, 'content-type': 'application/json; charset=utf-8' }, body };
  };
}
