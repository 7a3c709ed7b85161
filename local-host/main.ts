import { ConfigError, loadLocalHostConfig } from '../functions/config.js';
import { loadLocalSettings } from './settings.js';
import { startLocalHost } from './server.js';

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
  const message = error instanceof ConfigError || error instanceof TypeError ? error.message : String(error);
  process.stderr.write(`validatejwt: cannot start: ${message}\n`);
  process.exitCode = 1;
}
