/**
 * The portal's own function app (not the webhook's: package.json `main` never names this file; scripts/deploy-portal.sh
 * packages it with its own package.json and a host.json whose routePrefix is ''). Signed-in users only, through App
 * Service Authentication (Easy Auth) with Microsoft Entra ID; the app still checks the principal and its role itself.
 */
import { app } from '@azure/functions';
import { DefaultAzureCredential } from '@azure/identity';
import { composePortal } from './compose.js';
import { loadPortalConfig } from './config.js';
import { createFunctionsAdapter } from './functions-adapter.js';

const config = loadPortalConfig(process.env, 'azure');
// One credential (the app's managed identity) and one client for the life of the process.
const { handler } = composePortal(config, {
  // Audit lines go to stdout, which the Functions host forwards to Application Insights as traces.
  log: (line) => console.log(line),
  signInUrl: `/.auth/login/aad?post_login_redirect_uri=${encodeURIComponent(`${config.basePath}/devices`)}`,
  signOut: { url: '/.auth/logout', post: false },
  secureCookies: true,
  credential: () => new DefaultAzureCredential(),
});

app.http('portal', {
  route: '{*path}',
  methods: ['GET', 'POST'],
  authLevel: 'anonymous',
  handler: createFunctionsAdapter(handler, config.basePath),
});
