import { app } from '@azure/functions';
import { startWebhook } from './app/compose.js';
import { toFunctionsHandler } from './app/functions-adapter.js';

// HTTP streams: without them the host buffers the whole body before the handler runs, and the 64 KiB limit would
// only be checked afterwards. Needs Functions host 4.28+ (the library throws on older hosts); there the body is
// still limited, only after buffering, and the worker keeps running.
try {
  app.setup({ enableHttpStream: true });
} catch (error) {
  console.warn(JSON.stringify({ event: 'validatejwt', outcome: 'degraded', message: `HTTP streams are off (${error instanceof Error ? error.name : typeof error}): the host buffers each body before the 64 KiB limit is checked` }));
}

// Built once per process: settings are read and checked at start, and the key store, its credential and its cache
// live as long as the worker. A start fault never rejects (it would kill the worker): it is logged once, naming
// the setting, and each request is answered 503 webhook_misconfigured until it is fixed.
const webhook = startWebhook(process.env, { report: (line) => console.error(line) });

export const validateJwt = toFunctionsHandler(webhook);

app.http('validatejwt', {
  methods: ['POST'],
  authLevel: 'function',
  handler: validateJwt,
});
