import { ConfigError, loadLocalHostConfig } from '../functions/config.js';
import { WebhookError } from '../functions/core/reasons.js';
import { loadLocalSettings } from './settings.js';
import { errorClass, startLocalHost } from './server.js';

// The last guard: a fault no handler caught is reported by its class name only (Node's own report prints the
// message and the stack, which may quote a request target with ?code= or a token), then the process stops, as
// Node advises after an uncaught exception: its state is unknown. Request faults never get here (server.ts answers
// them); this is for bugs.
for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
  process.on(event, (error: unknown) => {
    process.stderr.write(`validatejwt: stopped after an unexpected ${errorClass(error)} (${event}); details are withheld because they may quote a request\n`);
    process.exit(70);
  });
}

// `npm start`: the webhook on http://localhost:7071/api/validatejwt, settings from local.settings(.example).json.
try {
  const { env, file } = await loadLocalSettings(process.cwd(), process.env);
  const host = await startLocalHost({ env });
  process.stdout.write(`validatejwt listening on ${host.url}${file !== undefined ? ` (settings: ${file})` : ''}\n`);
  if (loadLocalHostConfig(env).functionKey === undefined) {
    process.stderr.write('validatejwt: warning: WEBHOOK_FUNCTION_KEY is not set: every caller that can reach this port is answered, with no function key asked\n');
  }
  const stop = () => void host.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} catch (error) {
  const message = error instanceof ConfigError || error instanceof TypeError || error instanceof WebhookError ? error.message : errorClass(error);
  process.stderr.write(`validatejwt: cannot start: ${message}\n`);
  process.exitCode = 1;
}
