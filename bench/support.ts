/**
 * The test helpers the benchmark shares with the test suite, re-exported rather than copied. tsconfig's `include`
 * leaves `test/` out, but tsc still compiles every file a compiled file imports, so `npm run build` emits these to
 * dist/test/support/ and `node dist/bench/run.js` finds them there. Only the benchmark imports them; the function
 * app (`main`: the esbuild bundle dist/bundle/validatejwt.js, built from functions/ alone) never does.
 */
export { allocationRequest, deviceClaims, ID_SCOPE, keysDir, makeDevice, signToken, type TestDevice } from '../test/support/devices.js';
export { createTestCa, startKeyVaultStandin, type KeyVaultStandin, type TestCa } from '../test/support/keyvault-standin.js';
export { startManagedIdentityStandin, useManagedIdentityEnv, type ManagedIdentityStandin } from '../test/support/managed-identity-standin.js';
export { guardLoopback } from '../test/support/loopback-guard.js';
export { AZURE_INGESTION_HOST, startIngestionStandin, type IngestionStandin } from '../test/support/ingestion-standin.js';
