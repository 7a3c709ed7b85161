import { DefaultAzureCredential } from '@azure/identity';
import { PortalConfigError } from '../config.js';
import { FieldConfigError } from '../core/fields.js';
import { startLocalPortal } from './server.js';

// `PORTAL_DEV_SIGN_IN=on npm run portal`: the portal on http://localhost:7072 over the key folder (default
// ./device-keys), the example form (portal/fields.example.json) and the example users (portal/dev-users.example.json).
const env = {
  DEVICE_KEYS_DIR: process.env.KEY_VAULT_URL === undefined ? 'device-keys' : undefined,
  PORTAL_FIELDS_FILE: process.env.PORTAL_FIELDS === undefined ? 'portal/fields.example.json' : undefined,
  PORTAL_DEV_USERS_FILE: 'portal/dev-users.example.json',
  ...process.env,
};
try {
  // With KEY_VAULT_URL: the developer's own Azure sign-in (az login), made once.
  const portal = await startLocalPortal({ env, credential: () => new DefaultAzureCredential() });
  process.stdout.write(`portal listening on ${portal.url} (${portal.store.description}; development sign-in)\n`);
  const stop = () => void portal.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} catch (error) {
  const message = error instanceof PortalConfigError || error instanceof FieldConfigError ? error.message : String(error);
  process.stderr.write(`portal: cannot start: ${message}\n`);
  process.exitCode = 1;
}
