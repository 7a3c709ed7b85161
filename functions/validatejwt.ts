import { app } from '@azure/functions';
import { createWebhook } from './app/compose.js';
import { toFunctionsHandler } from './app/functions-adapter.js';
import { loadConfig } from './config.js';

// Built once per process: config is read and checked at start (a bad setting fails the host's load, naming the
// setting), and the key store, its credential and its cache live as long as the worker.
const webhook = createWebhook(loadConfig(process.env));

export const validateJwt = toFunctionsHandler(webhook);

app.http('validatejwt', {
  methods: ['POST'],
  authLevel: 'function',
  handler: validateJwt,
});
