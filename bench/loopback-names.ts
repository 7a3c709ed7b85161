/**
 * Preloaded (`node --import`) into a bench child that must reach a stand-in by its Azure name and directly, as it
 * reaches the service in Azure: every name in BENCH_LOOPBACK_NAMES (comma-separated) resolves to 127.0.0.1 through
 * node:dns `lookup`, which net and tls call for each connection made by name (a test/support/loopback-guard.ts
 * guardDns test shows that); every other name resolves as before.
 *
 * Why: the exporter gzips only for an Azure ingestion host name, and through a proxy (HTTPS_PROXY) its client opens a
 * new tunnel and TLS session for every batch (@typespec/ts-http-runtime policies/proxyPolicy.js makes its
 * HttpsProxyAgent without keepAlive), while without one it keeps the connection (nodeHttpClient.js: an https.Agent
 * with keepAlive: true). In Azure there is no proxy, so the bench's CPU figures should not pay a handshake a batch.
 */
import dns, { type LookupAddress, type LookupOptions } from 'node:dns';

const names = new Set(
  (process.env.BENCH_LOOPBACK_NAMES ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== ''),
);

type Callback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

if (names.size > 0) {
  const loopback: LookupAddress = { address: '127.0.0.1', family: 4 };
  const wantsAll = (options: unknown) => typeof options === 'object' && options !== null && (options as LookupOptions).all === true;
  const originalLookup = dns.lookup;
  dns.lookup = function lookup(hostname: string, ...rest: unknown[]) {
    if (!names.has(String(hostname).toLowerCase())) return (originalLookup as (...a: unknown[]) => void).call(dns, hostname, ...rest);
    const callback = rest.at(-1) as Callback;
    const all = rest.length > 1 && wantsAll(rest[0]);
    process.nextTick(() => (all ? callback(null, [loopback]) : callback(null, loopback.address, loopback.family)));
  } as typeof dns.lookup;
  const originalPromise = dns.promises.lookup;
  dns.promises.lookup = async function lookup(hostname: string, options?: unknown) {
    if (!names.has(String(hostname).toLowerCase())) return (originalPromise as (...a: unknown[]) => Promise<unknown>).call(dns.promises, hostname, options);
    return wantsAll(options) ? [loopback] : loopback;
  } as typeof dns.promises.lookup;
}
