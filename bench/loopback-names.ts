/**
 * Preloaded (`node --import`) into a bench child that must reach a stand-in by its Azure name and directly, as it
 * reaches the service in Azure: every name in BENCH_LOOPBACK_NAMES (comma-separated) resolves to 127.0.0.1 through
 * node:dns (test/support/loopback-guard.ts interceptLookups, the mechanism guardDns refuses names with); every other
 * name resolves as before.
 *
 * Why: the exporter gzips only for an Azure ingestion host name, and through a proxy (HTTPS_PROXY) its client opens a
 * new tunnel and TLS session for every batch (@typespec/ts-http-runtime policies/proxyPolicy.js makes its
 * HttpsProxyAgent without keepAlive), while without one it keeps the connection (nodeHttpClient.js: an https.Agent
 * with keepAlive: true). In Azure there is no proxy, so the bench's CPU figures should not pay a handshake a batch.
 */
// Straight from the guard, not through ./support.js: a preload loads only what it needs into the measured process.
import { interceptLookups } from '../test/support/loopback-guard.js';

const names = new Set(
  (process.env.BENCH_LOOPBACK_NAMES ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== ''),
);

if (names.size > 0) {
  const loopback = { address: '127.0.0.1', family: 4 };
  interceptLookups((name) => (names.has(name.toLowerCase()) ? loopback : undefined));
}
