/**
 * `npm run bench`: how fast the webhook admits registrations, side by side with the floor (one P-256 signature
 * verification each) and with the Python sample's check, on this machine, in one run.
 *
 *   1. floor      raw ES256 verifications/s with node:crypto, one worker thread per core
 *   2. python     PyJWT's jwt.decode(token, pem, algorithms=["ES256"]), one process, as the Python sample runs
 *   3. handler    webhook.handle in this process, warm key cache, many distinct devices
 *   4. http       the `npm start` local host (a child process) under autocannon: peak, then half the peak rate
 *   5. storm      a cold storm against the Key Vault path (real SDK, local stand-ins, a child process)
 *   6. memory     resident set with 100,000 cached device keys (a child process, --expose-gc): after the fill, and
 *                 after serving at a steady rate; in a cgroup of the function app's instance memory (2048 MB) and
 *                 on the host's memory
 *   7. cold start process start to the first device admitted through the Key Vault stand-in, bundled and not, each
 *                 without and with telemetry (APPLICATIONINSIGHTS_CONNECTION_STRING naming an Azure ingestion host,
 *                 tunnelled to the loopback ingestion stand-in)
 *   8. package    the deploy zip (dist/app.zip): size and files, beside what the unbundled app deployed
 *   9. CPU        CPU time per decision of the HTTP host against one raw jose verification and against a minimal
 *                 node:http + jose server, and of the host with telemetry on (every decision a trace and metrics,
 *                 exported to the ingestion stand-in by its Azure name over a kept-alive connection, as in Azure):
 *                 the three measured in turn at the same rate, in paired rounds
 *  10. fleet      `fleet import` of 20,000 keys against the rate-limited vault stand-in, vs register-key.sh (bench/fleet.ts)
 *  11. demo       `npm run demo` from spawn to exit, 3 runs (bench/demo.ts); the demo's test checks what it shows
 *
 * Prints one table and writes the figures as JSON (bench/results/latest.json, or --out FILE).
 * Flags: --quick (the CI smoke: tiny durations and counts), --out FILE, --connections N (HTTP),
 * --max-reads N (storm: KEY_STORE_MAX_CONCURRENT_READS), --vault-latency-ms N (storm: the stand-in's answer time),
 * --only cpu|memory (sections 4 + 9, or 6, alone; figures to bench/results/only.json unless --out).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import autocannon from 'autocannon';
import { importSPKI, jwtVerify } from 'jose';
import { createWebhook } from '../functions/app/compose.js';
import { loadConfig } from '../functions/config.js';
import { cleanEnv, createMemoryGroup, deployedNodeOptions, formatNumber, percentile, round, runNodeChild, Samples } from './lib.js';
import { pacedLoad } from './paced.js';
import { fleetBench, fleetPlan, fleetRows, fleetTargets, type FleetBenchResult } from './fleet.js';
import { DEMO_TARGET_SECONDS, demoDuration, type DemoResult } from './demo.js';
import { deviceSecretName } from '../functions/keys/names.js';
import { BUNDLE } from '../tools/bundle.js';
import { packageApp } from '../tools/package.js';
import { zip } from '../tools/zip.js';
import {
  allocationRequest,
  AZURE_INGESTION_HOST,
  createTestCa,
  deviceClaims,
  ID_SCOPE,
  keysDir,
  makeDevice,
  signToken,
  startKeyVaultStandin,
  startIngestionStandin,
  startManagedIdentityStandin,
  type IngestionStandin,
  type ManagedIdentityStandin,
  type TestCa,
  type TestDevice,
} from './support.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..');

// ---------------------------------------------------------------------------------------------------------------
// Options

interface Options {
  quick: boolean;
  out: string;
  connections: number;
  maxReads: number;
  vaultLatencyMs: number;
  stormDevices?: number;
  stormBurst?: number;
  /** Only one section (and what it needs): `cpu` is sections 4 and 9, `memory` section 6. */
  only?: 'cpu' | 'memory';
}

function parseArgs(argv: readonly string[]): Options {
  const options: Options = { quick: false, out: join(repoRoot, 'bench', 'results', 'latest.json'), connections: 32, maxReads: 32, vaultLatencyMs: 10 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new TypeError(`${arg} needs a value`);
      return v;
    };
    const whole = (v: string) => {
      if (!/^\d+$/.test(v) || Number(v) < 1) throw new TypeError(`${arg} must be a whole number above 0`);
      return Number(v);
    };
    if (arg === '--quick') options.quick = true;
    else if (arg === '--out') options.out = resolve(value());
    else if (arg === '--connections') options.connections = whole(value());
    else if (arg === '--max-reads') options.maxReads = whole(value());
    else if (arg === '--vault-latency-ms') options.vaultLatencyMs = whole(value());
    else if (arg === '--storm-devices') options.stormDevices = whole(value());
    else if (arg === '--storm-burst') options.stormBurst = whole(value());
    else if (arg === '--only') {
      const v = value();
      if (v !== 'cpu' && v !== 'memory') throw new TypeError(`--only must be cpu or memory`);
      options.only = v;
    } else throw new TypeError(`unknown argument ${arg} (use --quick, --out FILE, --connections N, --max-reads N, --vault-latency-ms N, --storm-devices N, --storm-burst N, --only cpu|memory)`);
  }
  // A partial run never overwrites the full run's figures unless told where to write.
  if (options.only !== undefined && !argv.includes('--out')) options.out = join(repoRoot, 'bench', 'results', 'only.json');
  return options;
}

const options = parseArgs(process.argv.slice(2));
const plan = options.quick
  ? { floorSeconds: 0.5, pythonSeconds: 0.5, handlerSeconds: 0.5, httpSeconds: 1, cpuRounds: 1, cpuRoundSeconds: 1, devices: 50, stormDevices: 20, stormBurst: 3, memoryKeys: 2_000, coldStarts: 1, verifySeconds: 0.3, demoRuns: 1 }
  : { floorSeconds: 5, pythonSeconds: 5, handlerSeconds: 5, httpSeconds: 10, cpuRounds: 9, cpuRoundSeconds: 4, devices: 1_000, stormDevices: 1_000, stormBurst: 5, memoryKeys: 100_000, coldStarts: 7, verifySeconds: 3, demoRuns: 3 };
if (options.stormDevices !== undefined) plan.stormDevices = options.stormDevices;
if (options.stormBurst !== undefined) plan.stormBurst = options.stormBurst;
const progress = (message: string) => process.stderr.write(`bench: ${message}\n`);

// ---------------------------------------------------------------------------------------------------------------
// Devices and tokens shared by sections 2-4

const nowSeconds = Math.floor(Date.now() / 1000);
// Long enough for the whole run (the default JWT_MAX_LIFETIME_SECONDS is 3600).
const TOKEN_LIFETIME = 3000;

async function tokenFor(device: TestDevice): Promise<string> {
  return signToken(device.privateKey, deviceClaims(device, nowSeconds, { exp: nowSeconds + TOKEN_LIFETIME }));
}

// ---------------------------------------------------------------------------------------------------------------
// 1. The floor

interface FloorResult {
  threads: number;
  verificationsPerSecond: number;
  perThread: number;
  failed: number;
}

async function floor(): Promise<FloorResult> {
  const threads = availableParallelism();
  const workers = Array.from({ length: threads }, () =>
    new Worker(new URL('./floor-worker.js', import.meta.url), { workerData: { keys: 100, durationMs: plan.floorSeconds * 1000 } }),
  );
  try {
    await Promise.all(workers.map((w) => new Promise((ok, fail) => (w.once('message', ok), w.once('error', fail)))));
    const results = await Promise.all(
      workers.map((w) => {
        const done = new Promise<{ count: number; failed: number; seconds: number }>((ok, fail) => (w.once('message', ok), w.once('error', fail)));
        w.postMessage('go');
        return done;
      }),
    );
    const rate = results.reduce((sum, r) => sum + r.count / r.seconds, 0);
    return { threads, verificationsPerSecond: rate, perThread: rate / threads, failed: results.reduce((s, r) => s + r.failed, 0) };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// 2. The Python sample's check

const PYTHON = '/usr/bin/python3';
const PYTHON_SCRIPT = `
import json, sys, time
import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
cases = json.load(sys.stdin)
seconds = float(sys.argv[1])
def run(key_of):
    n = 0
    started = time.perf_counter()
    end = started + seconds
    while time.perf_counter() < end:
        for token, pem in cases:
            claims = jwt.decode(token, key_of(pem), algorithms=["ES256"])
            assert claims["registration_id"]
        n += len(cases)
    return n / (time.perf_counter() - started)
loaded = {pem: load_pem_public_key(pem.encode()) for _, pem in cases}
sample = run(lambda pem: pem)
preloaded = run(lambda pem: loaded[pem])
print(json.dumps({"decodesPerSecond": sample, "preloadedKeyDecodesPerSecond": preloaded, "pyjwt": jwt.__version__}))
`;

type PythonResult =
  | { skipped: false; decodesPerSecond: number; preloadedKeyDecodesPerSecond: number; pyjwt: string }
  | { skipped: true; note: string };

async function python(devices: readonly TestDevice[]): Promise<PythonResult> {
  const probe = spawnSync(PYTHON, ['-c', 'import jwt, cryptography'], { encoding: 'utf8' });
  if (probe.error !== undefined || probe.status !== 0) {
    return { skipped: true, note: `${PYTHON} cannot import jwt (install Debian's python3-jwt); PyJWT column skipped` };
  }
  // The Python sample's claims: no sub/aud, which PyJWT would check against arguments the sample does not pass.
  const cases = await Promise.all(
    devices.slice(0, 100).map(async (d) => [
      await signToken(d.privateKey, { registration_id: d.id, id_scope: ID_SCOPE, provisioning_host: 'global.azure-devices-provisioning.net', iat: nowSeconds, exp: nowSeconds + TOKEN_LIFETIME }),
      d.publicPem,
    ]),
  );
  return new Promise((ok, fail) => {
    const child = spawn(PYTHON, ['-c', PYTHON_SCRIPT, String(plan.pythonSeconds)], { stdio: ['pipe', 'pipe', 'inherit'], env: cleanEnv({}) });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), (plan.pythonSeconds * 2 + 30) * 1000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) return fail(new Error(`the PyJWT run exited with ${code}`));
      ok({ skipped: false, ...(JSON.parse(out) as { decodesPerSecond: number; preloadedKeyDecodesPerSecond: number; pyjwt: string }) });
    });
    child.stdin.end(JSON.stringify(cases));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// 3. The handler in process

interface HandlerResult {
  devices: number;
  concurrency: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  storeReads: number;
}

async function handler(keyDir: string, bodies: readonly string[]): Promise<HandlerResult> {
  const webhook = await createWebhook(loadConfig({ DEVICE_KEYS_DIR: keyDir, DPS_ID_SCOPE: ID_SCOPE }));
  const concurrency = 64;
  // Warm the key cache: every device once.
  for (let i = 0; i < bodies.length; i += concurrency) {
    const answers = await Promise.all(bodies.slice(i, i + concurrency).map((body) => webhook.handle({ body, contentType: 'application/json' })));
    const bad = answers.find((a) => a.status !== 200);
    if (bad !== undefined) throw new Error(`warm-up: a device was refused (${JSON.stringify(bad.body)})`);
  }
  const latencies = new Samples();
  let errors = 0;
  let next = 0;
  const started = performance.now();
  const end = started + plan.handlerSeconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const body = bodies[next++ % bodies.length]!;
        const t0 = performance.now();
        const answer = await webhook.handle({ body, contentType: 'application/json' });
        latencies.push(performance.now() - t0);
        if (answer.status !== 200) errors += 1;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const sorted = latencies.sorted();
  await webhook.close();
  return {
    devices: bodies.length,
    concurrency,
    requestsPerSecond: latencies.length / seconds,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    errors,
    storeReads: webhook.keyCache.stats.reads,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Over HTTP, through the `npm start` host in its own process

interface LoadResult {
  connections: number;
  targetRate: number | null;
  requestsPerSecond: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
  /** Paced run only: p99 counted from the moment the request left, without the generator's own lag. */
  p99FromSendMs?: number;
}

interface HttpResult {
  peak: LoadResult;
  /** autocannon with overallRate = half the peak: each connection's quota leaves at the start of every second. */
  halfPeak: LoadResult;
  /** The same rate arriving evenly (open loop, latency from the moment each request was due). */
  halfPeakPaced: LoadResult;
  /** Decision lines the host wrote to its stdout (a file here), one per request. */
  logLines: number;
  /** The host's CPU time (user + system, all its threads) per request it answered: at peak, and at half the peak. */
  cpuUsPerDecision: { peak: number | null; halfPeak: number | null };
}

interface ServerProcess {
  url: string;
  logFile: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts `node <args>` and waits for its first stdout line to say "listening on <url>". */
async function startServerProcess(args: readonly string[], env: NodeJS.ProcessEnv, workDir: string, name: string): Promise<ServerProcess> {
  const logFile = join(workDir, `${name}.log`);
  const fd = openSync(logFile, 'w');
  // cwd: an empty folder, so no local.settings.json changes the settings; env: only what the bench sets.
  const child = spawn(process.execPath, args, { cwd: workDir, env, stdio: ['ignore', fd, 'inherit'] });
  closeSync(fd);
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  const deadline = Date.now() + 15_000;
  for (;;) {
    const first = readFileSync(logFile, 'utf8').split('\n')[0] ?? '';
    const url = /listening on (http:\/\/\S+)/.exec(first)?.[1];
    if (url !== undefined) {
      return {
        url,
        logFile,
        pid: child.pid!,
        stop: async () => {
          child.kill('SIGTERM');
          await Promise.race([exited, new Promise((ok) => setTimeout(ok, 5_000))]);
          if (child.exitCode === null) child.kill('SIGKILL');
        },
      };
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} did not start (see its output above)`);
    }
    await new Promise((ok) => setTimeout(ok, 50));
  }
}

function startHostProcess(keyDir: string, workDir: string, extraEnv: Record<string, string> = {}, name = 'local-host'): Promise<ServerProcess> {
  return startServerProcess([join(repoRoot, 'dist', 'local-host', 'main.js')], cleanEnv({ DEVICE_KEYS_DIR: keyDir, DPS_ID_SCOPE: ID_SCOPE, PORT: '0', ...extraEnv }), workDir, name);
}

/**
 * The app settings that turn telemetry on, as in Azure (a connection string and Entra ID ingestion), aimed at the
 * loopback stand-ins: the process must trust `certFile` (the stand-in's CA) and get its tokens from `mi`. Ingestion is
 * named by its Azure host, so the exporter gzips each batch as it does in Azure and the figures include that CPU; to a
 * loopback address it would send uncompressed. `tunnel` reaches it through the stand-in's tunnel (HTTPS_PROXY), a new
 * connection per batch; `direct` resolves the name to loopback in the child (loopback-names.ts) and keeps one
 * connection, as the exporter does in Azure, for the steady-state CPU figures. The exporter's own settings poll is
 * refused by the proxy either way, and statsbeat, which probes the VM metadata address off Azure, is off: nothing
 * leaves loopback.
 */
function telemetryEnv(ingestion: IngestionStandin, mi: { endpoint: string; identityHeader: string }, certFile: string, route: 'tunnel' | 'direct'): Record<string, string> {
  const direct = route === 'direct';
  return {
    APPLICATIONINSIGHTS_CONNECTION_STRING: direct ? ingestion.directConnectionString : ingestion.azureConnectionString,
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD',
    IDENTITY_ENDPOINT: mi.endpoint,
    IDENTITY_HEADER: mi.identityHeader,
    AZURE_TOKEN_CREDENTIALS: 'prod',
    NODE_EXTRA_CA_CERTS: certFile,
    HTTPS_PROXY: ingestion.egressProxy,
    NO_PROXY: direct ? `127.0.0.1,localhost,${AZURE_INGESTION_HOST}` : '127.0.0.1,localhost',
    APPLICATION_INSIGHTS_NO_STATSBEAT: 'true',
    // The name and the preload that maps it to loopback go together: without the preload it would be looked up.
    ...(direct && {
      BENCH_LOOPBACK_NAMES: AZURE_INGESTION_HOST,
      NODE_OPTIONS: `--import=${pathToFileURL(join(here, 'loopback-names.js')).href}`,
    }),
  };
}

/** A CA written to a file, the managed identity and ingestion stand-ins trusting it, for a process with telemetry on. */
async function telemetryStandins(
  workDir: string,
  shared: { ca?: TestCa; mi?: ManagedIdentityStandin } = {},
): Promise<{ env: (route: 'tunnel' | 'direct', certFile?: string) => Record<string, string>; ingestion: IngestionStandin; stop(): Promise<void> }> {
  const authority = shared.ca ?? (await createTestCa());
  const certFile = join(workDir, `telemetry-ca-${Math.random().toString(36).slice(2)}.pem`);
  writeFileSync(certFile, authority.certPem);
  // Ingestion reads the token's audience, so the identity stand-in issues JWTs.
  const mi = shared.mi ?? (await startManagedIdentityStandin({ tokenFormat: 'jwt' }));
  const ingestion = await startIngestionStandin({ entraOnly: true, acceptsToken: mi.isIssuedToken, ca: authority, retain: false });
  return {
    env: (route, file = certFile) => telemetryEnv(ingestion, mi, file, route),
    ingestion,
    stop: async () => {
      await ingestion.stop();
      if (shared.mi === undefined) await mi.stop();
    },
  };
}

let clockTicks: number | undefined;
/** CPU seconds (user + system, every thread) a process has used so far, from /proc; null where there is no /proc. */
function cpuSeconds(pid: number): number | null {
  try {
    // Fields after the command name (which may hold spaces): state is field 3, utime 14 and stime 15.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return null;
  }
}

/** Sends every body once (fills the key cache), then a short load (warms the JIT), as before each measured run. */
async function warmUp(url: string, bodies: readonly string[]): Promise<void> {
  for (let i = 0; i < bodies.length; i += 32) {
    await Promise.all(
      bodies.slice(i, i + 32).map(async (body) => {
        const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`warm-up: a device was refused over HTTP (${res.status})`);
      }),
    );
  }
  await load(url, bodies, options.connections, Math.min(2, plan.httpSeconds));
}

/** A load run with the server's CPU time per answered request. */
async function loadWithCpu(server: ServerProcess, bodies: readonly string[], overallRate?: number, seconds = plan.httpSeconds): Promise<{ run: LoadResult; cpuUsPerDecision: number | null }> {
  const before = cpuSeconds(server.pid);
  const run = await load(server.url, bodies, options.connections, seconds, overallRate);
  const after = cpuSeconds(server.pid);
  const answered = run.requests - run.errors;
  return { run, cpuUsPerDecision: before === null || after === null || answered <= 0 ? null : ((after - before) * 1e6) / answered };
}

async function load(url: string, bodies: readonly string[], connections: number, seconds: number, overallRate?: number): Promise<LoadResult> {
  const { origin, pathname } = new URL(url);
  const latencies = new Samples();
  const instance = autocannon({
    url: origin,
    connections,
    duration: seconds,
    ...(overallRate !== undefined && { overallRate, ignoreCoordinatedOmission: true }),
    // Distinct devices in turn; each body is built into a request buffer once.
    requests: bodies.map((body) => ({ method: 'POST' as const, path: pathname, headers: { 'content-type': 'application/json' }, body })),
  });
  // autocannon's own histogram has 1 ms steps; keep every response time at full resolution.
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
  });
  const result = await instance;
  const sorted = latencies.sorted();
  return {
    connections,
    targetRate: overallRate ?? null,
    requestsPerSecond: result.requests.total / (result.duration || seconds),
    requests: result.requests.total,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}

async function http(keyDir: string, bodies: readonly string[], workDir: string): Promise<HttpResult> {
  const host = await startHostProcess(keyDir, workDir);
  try {
    // Warm the key cache with every device once (autocannon's connections all start at the first request), then the JIT.
    await warmUp(host.url, bodies);
    const { run: peak, cpuUsPerDecision: peakCpu } = await loadWithCpu(host, bodies);
    const half = Math.max(1, Math.floor(peak.requestsPerSecond / 2));
    const { run: halfPeak, cpuUsPerDecision: halfPeakCpu } = await loadWithCpu(host, bodies, half);
    // The paced generator is node:http in this process: warm its code paths first, as autocannon's were by the runs above.
    await pacedLoad(host.url, bodies, half, Math.min(3, plan.httpSeconds), options.connections * 2);
    const paced = await pacedLoad(host.url, bodies, half, plan.httpSeconds, options.connections * 2);
    const pacedSorted = paced.latencies.sorted();
    const halfPeakPaced: LoadResult = {
      connections: options.connections * 2,
      targetRate: half,
      requestsPerSecond: paced.latencies.length / paced.seconds,
      requests: paced.sent,
      p50Ms: percentile(pacedSorted, 50),
      p99Ms: percentile(pacedSorted, 99),
      errors: paced.errors,
      non2xx: paced.non2xx,
      p99FromSendMs: percentile(paced.fromSend.sorted(), 99),
    };
    await host.stop();
    const logLines = readFileSync(host.logFile, 'utf8').split('\n').filter((l) => l.startsWith('{')).length;
    return { peak, halfPeak, halfPeakPaced, logLines, cpuUsPerDecision: { peak: peakCpu, halfPeak: halfPeakCpu } };
  } finally {
    await host.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// 5. The cold storm (Key Vault path) and 6. memory, each in its own process

interface StormChildResult {
  registrations: number;
  ok: number;
  refused: number;
  unanswered: number;
  waves: Array<{ sent: number; ok: number; retry: number; other: number; seconds: number; p99Ms: number; retryAfterSeconds: number }>;
  secondsToAdmitAll: number;
  cacheReads: number;
  blockedConnections: number;
}

interface StormResult extends StormChildResult {
  devices: number;
  burstPerDevice: number;
  vaultLatencyMs: number;
  firstWaveRegistrationsPerSecond: number;
  firstWaveOk: number;
  vaultReads: number;
  vaultReadsPerDevice: number;
  peakConcurrentVaultReads: number;
  maxConcurrentReads: number;
  challenges: number;
  tokenRequests: number;
}

async function storm(workDir: string): Promise<StormResult> {
  // A throwaway CA: the stand-in's certificate is issued by it, and the webhook process trusts it through
  // NODE_EXTRA_CA_CERTS, as the test suite's global setup does. Certificate checks stay on.
  const ca = await createTestCa();
  const certFile = join(workDir, 'ca.pem');
  writeFileSync(certFile, ca.certPem);
  const mi = await startManagedIdentityStandin();
  const vault = await startKeyVaultStandin({ acceptsToken: mi.isIssuedToken, ca });
  try {
    const devices = await Promise.all(Array.from({ length: plan.stormDevices }, (_, i) => makeDevice(`storm-device-${i}`)));
    for (const device of devices) vault.setSecret(deviceSecretName(device.id), device.publicPem);
    // Each device's burst, interleaved: every device's first registration, then every second one, and so on.
    const bodies: string[] = new Array<string>(devices.length * plan.stormBurst);
    await Promise.all(
      devices.flatMap((device, d) =>
        Array.from({ length: plan.stormBurst }, async (_, b) => {
          const token = await signToken(device.privateKey, deviceClaims(device, nowSeconds, { exp: nowSeconds + TOKEN_LIFETIME }));
          bodies[b * devices.length + d] = JSON.stringify(allocationRequest({ registrationId: device.id, token }));
        }),
      ),
    );
    const bodiesFile = join(workDir, 'storm-bodies.json');
    writeFileSync(bodiesFile, JSON.stringify(bodies));
    // A real vault read takes milliseconds; an instant answer would never overlap another.
    vault.setFault({ kind: 'delay', ms: options.vaultLatencyMs });
    vault.resetCounters();
    const child = await runNodeChild<StormChildResult>(
      [join(here, 'storm.js'), bodiesFile],
      cleanEnv({
        NODE_EXTRA_CA_CERTS: certFile,
        // The managed identity stand-in, in the environment from the first instruction: no credential can ever
        // probe the instance metadata address. AZURE_TOKEN_CREDENTIALS=prod keeps developer tools out of the chain.
        IDENTITY_ENDPOINT: mi.endpoint,
        IDENTITY_HEADER: mi.identityHeader,
        AZURE_TOKEN_CREDENTIALS: 'prod',
        KEY_VAULT_URL: vault.url,
        DPS_ID_SCOPE: ID_SCOPE,
        // The stand-in's challenge names https://vault.azure.net, which is not its own host name.
        KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'true',
        KEY_STORE_MAX_CONCURRENT_READS: String(options.maxReads),
      }),
      300_000,
    );
    const first = child.waves[0];
    return {
      ...child,
      devices: plan.stormDevices,
      burstPerDevice: plan.stormBurst,
      vaultLatencyMs: options.vaultLatencyMs,
      firstWaveRegistrationsPerSecond: first === undefined ? 0 : first.sent / first.seconds,
      firstWaveOk: first?.ok ?? 0,
      vaultReads: vault.reads(),
      vaultReadsPerDevice: vault.reads() / plan.stormDevices,
      peakConcurrentVaultReads: vault.peakConcurrentReads,
      maxConcurrentReads: options.maxReads,
      challenges: vault.challenges,
      tokenRequests: mi.tokenRequests,
    };
  } finally {
    await vault.stop();
    await mi.stop();
  }
}

/** One measuring process (bench/memory.ts). */
interface MemoryRun {
  keys: number;
  cachedEntries: number;
  storeReads: number;
  extraReadsWhenAdmitting: number;
  sampleAdmitted: number;
  sampleSize: number;
  gcExposed: boolean;
  baselineRssMB: number;
  rssMB: number;
  heapUsedMB: number;
  externalMB: number;
  bytesPerKey: number;
  heapBytesPerKey: number;
  newSpaceMB: number;
  /** Serving: the sample admitted again at servingRate for servingSeconds after the fill. */
  servingSeconds: number;
  servingRate: number;
  servingDecisions: number;
  servingRefused: number;
  servingRssMB: number;
  servingNewSpaceMB: number;
  /** The memory limit the process ran under (its cgroup's), null: none, V8 sized its heap from the host's memory. */
  constrainedMemoryMB: number | null;
  heapSizeLimitMB: number;
  /** NODE_OPTIONS as the process saw it: scripts/node-options in the instance run, null on the host's defaults. */
  nodeOptions: string | null;
}

interface MemoryResult {
  /** On the function app's instance memory (a cgroup of instanceMemoryMB), or null when no cgroup could be made here. */
  instance: MemoryRun | null;
  instanceMemoryMB: number;
  instanceUnavailable: string | null;
  /** On this machine's memory, as every earlier run measured. */
  host: MemoryRun;
}

// deploy.sh's --instance-memory default: the Flex Consumption instance size the webhook is deployed on.
const INSTANCE_MEMORY_MB = 2048;
// Long enough for the young generation to reach what it keeps while serving; --quick serves a moment, to run the code.
const MEMORY_SERVE_SECONDS = 30;

/**
 * The target row: the larger of right after the fill and while serving, in the instance's memory when that could be
 * measured here, else on the host's (where V8 keeps a larger young generation: the stricter figure).
 */
function memoryTarget(m: MemoryResult): { target: string; value: number; met: boolean | null } {
  const run = m.instance ?? m.host;
  const value = Math.max(run.rssMB, run.servingRssMB);
  const where = m.instance === null ? 'host memory' : `a ${m.instanceMemoryMB} MB instance`;
  return { target: `<= 150 at 100,000 keys, after the fill and serving, ${where}`, value, met: run.keys >= 100_000 ? value <= 150 : null };
}

function memoryText(run: MemoryRun): string {
  const n = formatNumber;
  return (
    `RSS ${n(run.rssMB, 1)} MB after the fill, ${n(run.servingRssMB, 1)} MB after ${n(run.servingSeconds)} s serving ${n(run.servingRate)} decisions/s ` +
    `(heap ${n(run.heapUsedMB, 1)} MB, ${n(run.heapBytesPerKey)} B/key; young generation ${n(run.newSpaceMB, 1)} MB, V8 heap limit ${n(run.heapSizeLimitMB)} MB; empty ${n(run.baselineRssMB, 1)} MB` +
    `${run.nodeOptions === null ? '' : `; NODE_OPTIONS ${run.nodeOptions}`})`
  );
}

function memorySummary(m: MemoryResult): string {
  const instance = m.instance === null ? `${m.instanceMemoryMB} MB instance: not measured (${m.instanceUnavailable})` : `${m.instanceMemoryMB} MB instance: ${memoryText(m.instance)}`;
  return `${instance}; host memory: ${memoryText(m.host)}`;
}

async function memory(workDir: string): Promise<MemoryResult> {
  const keyFile = join(workDir, 'memory-keys.txt');
  await runNodeChild<{ keys: number }>([join(here, 'memory.js'), 'keygen', String(plan.memoryKeys), keyFile], cleanEnv({}), 600_000);
  const measure = (env: NodeJS.ProcessEnv, cgroup?: string) =>
    runNodeChild<MemoryRun>(['--expose-gc', join(here, 'memory.js'), 'measure', keyFile, String(options.quick ? 1 : MEMORY_SERVE_SECONDS)], env, 600_000, cgroup);
  const group = createMemoryGroup(INSTANCE_MEMORY_MB, 'dps-jwt-bench-memory');
  let instance: MemoryRun | null = null;
  if ('dir' in group) {
    try {
      // As deployed: the instance's memory and the app's NODE_OPTIONS. The host run keeps Node's own defaults.
      instance = await measure(cleanEnv({ NODE_OPTIONS: deployedNodeOptions(repoRoot) }), group.dir);
    } finally {
      group.remove();
    }
    // The figure is the instance's only if Node saw the limit (and so handed it to V8).
    if (instance.constrainedMemoryMB !== INSTANCE_MEMORY_MB) throw new Error(`the memory process saw a limit of ${instance.constrainedMemoryMB} MB, not ${INSTANCE_MEMORY_MB}`);
  }
  const host = await measure(cleanEnv({}));
  return { instance, instanceMemoryMB: INSTANCE_MEMORY_MB, instanceUnavailable: 'unavailable' in group ? group.unavailable : null, host };
}

// ---------------------------------------------------------------------------------------------------------------
// 7. Cold start, bundled and not

interface ColdStartRun {
  sinceStartMs: number;
  cpuMs: number;
  bootMs: number;
  importMs: number;
  firstAdmissionMs: number;
}

interface ColdStartSummary extends ColdStartRun {
  module: string;
  /** The fastest of the runs, process start to admitted. */
  bestSinceStartMs: number;
}

interface ColdStartResult {
  starts: number;
  bundled: ColdStartSummary;
  unbundled: ColdStartSummary;
  /** The same two with telemetry on: the exporter chunk loaded and the providers built before the first admission. */
  bundledTelemetry: ColdStartSummary;
  unbundledTelemetry: ColdStartSummary;
  /** bundled / unbundled, process start to the first device admitted (medians). */
  ratio: number;
  /** The same with telemetry on (bundled / unbundled, both with it). */
  telemetryRatio: number;
  /** The same for the CPU time the process used until then. */
  cpuRatio: number;
  blockedConnections: number;
}

const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? 0;
};

type ColdStartKind = 'bundled' | 'unbundled' | 'bundledTelemetry' | 'unbundledTelemetry';

async function coldStart(workDir: string): Promise<ColdStartResult> {
  const ca = await createTestCa();
  const certFile = join(workDir, 'cold-ca.pem');
  writeFileSync(certFile, ca.certPem);
  // JWT tokens: the ingestion stand-in reads their audience; the vault stand-in only asks isIssuedToken.
  const mi = await startManagedIdentityStandin({ tokenFormat: 'jwt' });
  const vault = await startKeyVaultStandin({ acceptsToken: mi.isIssuedToken, ca });
  const telemetry = await telemetryStandins(workDir, { ca, mi });
  try {
    const device = await makeDevice('cold-start-device');
    vault.setSecret(deviceSecretName(device.id), device.publicPem);
    const bodyFile = join(workDir, 'cold-body.json');
    writeFileSync(bodyFile, JSON.stringify(allocationRequest({ registrationId: device.id, token: await tokenFor(device) })));
    const env = cleanEnv({
      NODE_EXTRA_CA_CERTS: certFile,
      // As in section 5: the managed identity stand-in from the first instruction; developer tools out of the chain.
      IDENTITY_ENDPOINT: mi.endpoint,
      IDENTITY_HEADER: mi.identityHeader,
      AZURE_TOKEN_CREDENTIALS: 'prod',
      KEY_VAULT_URL: vault.url,
      KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'true',
      DPS_ID_SCOPE: ID_SCOPE,
    });
    // One identity stand-in issues both the vault's and the ingestion's tokens, as the app's one managed identity does.
    // Through the tunnel: a cold start opens its first connection to ingestion in Azure too.
    const telemetryEnvironment = { ...env, ...telemetry.env('tunnel', certFile) };
    const bundle = join(repoRoot, BUNDLE);
    const unbundledModule = join(repoRoot, 'dist', 'functions', 'validatejwt.js');
    const variants: Record<ColdStartKind, { module: string; env: NodeJS.ProcessEnv }> = {
      bundled: { module: bundle, env },
      unbundled: { module: unbundledModule, env },
      bundledTelemetry: { module: bundle, env: telemetryEnvironment },
      unbundledTelemetry: { module: unbundledModule, env: telemetryEnvironment },
    };
    const runs: Record<ColdStartKind, ColdStartRun[]> = { bundled: [], unbundled: [], bundledTelemetry: [], unbundledTelemetry: [] };
    let blocked = 0;
    // One start of each first, not counted (it reads the files into the page cache; not in --quick), then alternate
    // which goes first.
    const kinds = Object.keys(variants) as ColdStartKind[];
    for (let i = options.quick ? 0 : -1; i < plan.coldStarts; i++) {
      const order = i % 2 === 0 ? kinds : [...kinds].reverse();
      for (const kind of order) {
        const run = await runNodeChild<ColdStartRun & { status: number; code?: string; blockedConnections: number }>(
          [join(here, 'coldstart.js'), variants[kind].module, bodyFile],
          variants[kind].env,
          60_000,
        );
        if (run.status !== 200) throw new Error(`cold start (${kind}): the device was not admitted (${run.status} ${run.code ?? ''})`);
        blocked += run.blockedConnections;
        if (i >= 0) runs[kind].push(run);
      }
    }
    const summary = (kind: ColdStartKind): ColdStartSummary => ({
      module: relativeToRepo(variants[kind].module),
      sinceStartMs: median(runs[kind].map((r) => r.sinceStartMs)),
      cpuMs: median(runs[kind].map((r) => r.cpuMs)),
      bootMs: median(runs[kind].map((r) => r.bootMs)),
      importMs: median(runs[kind].map((r) => r.importMs)),
      firstAdmissionMs: median(runs[kind].map((r) => r.firstAdmissionMs)),
      bestSinceStartMs: Math.min(...runs[kind].map((r) => r.sinceStartMs)),
    });
    const [bundled, unbundled, bundledTelemetry, unbundledTelemetry] = kinds.map(summary) as [ColdStartSummary, ColdStartSummary, ColdStartSummary, ColdStartSummary];
    return {
      starts: plan.coldStarts,
      bundled,
      unbundled,
      bundledTelemetry,
      unbundledTelemetry,
      ratio: bundled.sinceStartMs / unbundled.sinceStartMs,
      telemetryRatio: bundledTelemetry.sinceStartMs / unbundledTelemetry.sinceStartMs,
      cpuRatio: bundled.cpuMs / unbundled.cpuMs,
      blockedConnections: blocked,
    };
  } finally {
    await telemetry.stop();
    await vault.stop();
    await mi.stop();
  }
}

const relativeToRepo = (path: string) => path.slice(repoRoot.length + 1);

// ---------------------------------------------------------------------------------------------------------------
// 8. The deploy package

interface PackageResult {
  zipBytes: number;
  zipFiles: number;
  /** What the app deployed before the bundle: dist/functions and the production node_modules, zipped the same way. */
  unbundled: { zipBytes: number; zipFiles: number } | null;
}

/** Every file of the production dependencies (npm's own list of them) and of dist/functions. */
function unbundledFiles(): Array<{ name: string; path: string }> {
  const files: Array<{ name: string; path: string }> = [];
  const walk = (dir: string, skipNodeModules: boolean) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!(skipNodeModules && entry.name === 'node_modules')) walk(path, skipNodeModules);
      } else if (entry.isFile()) files.push({ name: relativeToRepo(path), path });
    }
  };
  walk(join(repoRoot, 'dist', 'functions'), false);
  const listed = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: repoRoot, encoding: 'utf8', maxBuffer: 64 << 20 });
  for (const dir of new Set(listed.split('\n').filter((l) => l.includes('node_modules')))) if (existsSync(dir)) walk(dir, true);
  return files;
}

function deployPackage(): PackageResult {
  const { bytes, files } = packageApp(repoRoot);
  let unbundled: PackageResult['unbundled'] = null;
  if (!options.quick) {
    const entries = unbundledFiles().map(({ name, path }) => ({ name, data: readFileSync(path) }));
    entries.push({ name: 'host.json', data: readFileSync(join(repoRoot, 'host.json')) }, { name: 'package.json', data: readFileSync(join(repoRoot, 'package.json')) });
    unbundled = { zipBytes: zip(entries).length, zipFiles: entries.length };
  }
  return { zipBytes: bytes, zipFiles: files, unbundled };
}

// ---------------------------------------------------------------------------------------------------------------
// 9. CPU per decision: the HTTP host against one raw verification and against a minimal node:http + jose server

/** One round of section 9: each server's CPU time per answered request at the same rate, measured one after another. */
interface CpuRound {
  webhookUs: number | null;
  referenceUs: number | null;
  telemetryUs: number | null;
}

interface CpuResult {
  /** Request rate every server is given (section 4b's: half the webhook's peak), so that each answers the same load. */
  rate: number;
  /**
   * The rounds, each measuring the local host, bench/reference-server.ts and the host with telemetry on, in turn, at
   * that rate (same connections and devices). The figures below are medians over the rounds; the ratios, medians of
   * each round's own ratio. One run on a shared machine moved a ratio by 10%; paired rounds cancel most of that.
   */
  rounds: CpuRound[];
  webhookUsPerDecision: number | null;
  referenceUsPerDecision: number | null;
  reference: LoadResult;
  /** At each server's own peak (section 4 for the webhook): a faster server batches more per event-loop turn. */
  webhookPeakUsPerDecision: number | null;
  referencePeakUsPerDecision: number | null;
  referencePeak: LoadResult;
  /** jose jwtVerify with an imported key, one at a time, in this process. */
  rawVerifyUs: number;
  webhookVsReference: number | null;
  webhookVsRawVerify: number | null;
  /** The local host with telemetry on (trace + metrics per decision, exported to the ingestion stand-in), same rate. */
  telemetry: {
    usPerDecision: number | null;
    run: LoadResult;
    vsReference: number | null;
    /** vs the same host without telemetry (the rounds' webhook). */
    vsWithout: number | null;
    /** Envelopes the ingestion stand-in accepted during the run (spans and metrics). */
    itemsAccepted: number;
    /** Track requests the stand-in answered, and how many of them came gzip-compressed (all, as in Azure). */
    tracks: number;
    gzippedTracks: number;
    /** TLS sessions those requests came over: kept alive, as the exporter does in Azure, far fewer than requests. */
    connections: number;
    blockedEgress: number;
  };
}

async function rawVerifyCpu(devices: readonly TestDevice[]): Promise<number> {
  const cases = await Promise.all(
    devices.slice(0, 100).map(async (d) => ({ token: await tokenFor(d), key: await importSPKI(d.publicPem, 'ES256') })),
  );
  let count = 0;
  const run = async (seconds: number) => {
    const cpu = process.cpuUsage();
    const end = performance.now() + seconds * 1000;
    count = 0;
    while (performance.now() < end) {
      const c = cases[count % cases.length]!;
      await jwtVerify(c.token, c.key, { algorithms: ['ES256'] });
      count += 1;
    }
    const used = process.cpuUsage(cpu);
    return (used.user + used.system) / count;
  };
  await run(Math.min(1, plan.verifySeconds)); // warm the JIT
  return run(plan.verifySeconds);
}

/** A median that keeps null (no /proc) as null. */
const medianOrNull = (values: ReadonlyArray<number | null>) => (values.some((v) => v === null) ? null : median(values as number[]));
const ratioOf = (a: number | null, b: number | null) => (a === null || b === null ? null : a / b);

/** Each round's ratio of one server's figure to the reference's, as "1.08x, 1.12x, 1.10x". */
function roundRatios(rounds: readonly CpuRound[], which: 'webhookUs' | 'telemetryUs'): string {
  return rounds
    .map((r) => ratioOf(r[which], r.referenceUs))
    .map((v) => (v === null ? 'n/a' : `${v.toFixed(2)}x`))
    .join(', ');
}

async function cpuPerDecision(keyDir: string, bodies: readonly string[], devices: readonly TestDevice[], workDir: string, webhook: HttpResult): Promise<CpuResult> {
  const rate = webhook.halfPeak.targetRate ?? 1;
  const standins = await telemetryStandins(workDir);
  const servers: ServerProcess[] = [];
  let peak: { run: LoadResult; cpuUsPerDecision: number | null };
  const rounds: CpuRound[] = [];
  // The last round's runs, for rows 9 and 9c's rate and latency columns.
  let last: { reference: LoadResult; telemetry: LoadResult } | undefined;
  try {
    // All three at once, each warmed, then measured in turn: the machine's other load then falls on all of them alike.
    const reference = await startServerProcess([join(here, 'reference-server.js'), keyDir], cleanEnv({}), workDir, 'reference');
    servers.push(reference);
    const host = await startHostProcess(keyDir, workDir, {}, 'local-host-cpu');
    servers.push(host);
    const withTelemetry = await startHostProcess(keyDir, workDir, standins.env('direct'), 'local-host-telemetry');
    servers.push(withTelemetry);
    for (const server of servers) await warmUp(server.url, bodies);
    peak = await loadWithCpu(reference, bodies);
    const byName = { webhook: host, reference, telemetry: withTelemetry };
    const names = ['webhook', 'reference', 'telemetry'] as const;
    // Many short rounds rather than a few long ones: a round's runs are seconds apart, so a shift in what the rest of a
    // shared machine does lands on both sides of a pair, and the median of nine pairs shrugs off the rounds it hit.
    for (let r = 0; r < plan.cpuRounds; r++) {
      const figures: Partial<Record<(typeof names)[number], { run: LoadResult; cpuUsPerDecision: number | null }>> = {};
      // Each round starts with the next one, so no server is always measured first.
      for (let i = 0; i < names.length; i++) {
        const name = names[(r + i) % names.length]!;
        figures[name] = await loadWithCpu(byName[name], bodies, rate, plan.cpuRoundSeconds);
      }
      const { webhook: w, reference: ref, telemetry: t } = figures as Required<typeof figures>;
      rounds.push({ webhookUs: w.cpuUsPerDecision, referenceUs: ref.cpuUsPerDecision, telemetryUs: t.cpuUsPerDecision });
      last = { reference: ref.run, telemetry: t.run };
    }
  } finally {
    for (const server of servers) await server.stop();
    await standins.stop();
  }
  const rawVerifyUs = await rawVerifyCpu(devices);
  const webhookUs = medianOrNull(rounds.map((r) => r.webhookUs));
  return {
    rate,
    rounds,
    webhookUsPerDecision: webhookUs,
    referenceUsPerDecision: medianOrNull(rounds.map((r) => r.referenceUs)),
    reference: last!.reference,
    webhookPeakUsPerDecision: webhook.cpuUsPerDecision.peak,
    referencePeakUsPerDecision: peak.cpuUsPerDecision,
    referencePeak: peak.run,
    rawVerifyUs,
    webhookVsReference: medianOrNull(rounds.map((r) => ratioOf(r.webhookUs, r.referenceUs))),
    webhookVsRawVerify: webhookUs === null ? null : webhookUs / rawVerifyUs,
    telemetry: {
      usPerDecision: medianOrNull(rounds.map((r) => r.telemetryUs)),
      run: last!.telemetry,
      vsReference: medianOrNull(rounds.map((r) => ratioOf(r.telemetryUs, r.referenceUs))),
      vsWithout: medianOrNull(rounds.map((r) => ratioOf(r.telemetryUs, r.webhookUs))),
      itemsAccepted: standins.ingestion.acceptedCount,
      tracks: standins.ingestion.requests.length,
      gzippedTracks: standins.ingestion.requests.filter((r) => r.gzip).length,
      connections: standins.ingestion.connections,
      blockedEgress: standins.ingestion.refusedEgress.length,
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The report

function machine() {
  const list = cpus();
  return {
    cores: availableParallelism(),
    cpu: list[0]?.model.trim() ?? 'unknown',
    memoryGB: round(totalmem() / 1024 ** 3, 1),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    // Other work on the machine skews every figure; this is the 1-minute load average when the run started.
    loadAverage1m: round(loadavg()[0] ?? 0, 2),
  };
}

function table(results: Results): string {
  const { floor: f, python: py, handler: h, http: w, storm: s, memory: m, coldStart: c, package: z, cpu, ratios: r } = results;
  const n = formatNumber;
  const us = (v: number | null) => (v === null ? 'n/a (no /proc)' : `${n(v)} µs`);
  const x = (v: number | null) => (v === null || !Number.isFinite(v) ? 'n/a' : `${n(v, 2)}x`);
  const rows: string[][] = [
    ['#', 'what', 'rate /s', 'p50 ms', 'p99 ms', 'errors', 'notes'],
    ['1', `floor: node:crypto ES256 verify, ${f.threads} threads`, n(f.verificationsPerSecond), '', '', n(f.failed), `${n(f.perThread)} /s per thread`],
    py.skipped
      ? ['2', 'Python sample: PyJWT jwt.decode', 'skipped', '', '', '', py.note]
      : ['2', `Python sample: PyJWT ${py.pyjwt} jwt.decode, 1 process`, n(py.decodesPerSecond), '', '', '0', `${n(py.preloadedKeyDecodesPerSecond)} /s with a pre-loaded key`],
    ['3', `handler in process, ${n(h.devices)} devices, ${h.concurrency} in flight`, n(h.requestsPerSecond), n(h.p50Ms, 2), n(h.p99Ms, 2), n(h.errors), `${n(h.storeReads)} key reads (warm)`],
    ['4', `HTTP local host, autocannon ${w.peak.connections} conns, peak`, n(w.peak.requestsPerSecond), n(w.peak.p50Ms, 2), n(w.peak.p99Ms, 2), n(w.peak.errors + w.peak.non2xx), `${n(w.peak.requests)} requests`],
    ['4b', `HTTP at half the peak, autocannon overallRate ${n(w.halfPeak.targetRate ?? 0)} /s`, n(w.halfPeak.requestsPerSecond), n(w.halfPeak.p50Ms, 2), n(w.halfPeak.p99Ms, 2), n(w.halfPeak.errors + w.halfPeak.non2xx), 'quota sent in a burst each second'],
    ['4c', `HTTP at half the peak, evenly paced ${n(w.halfPeakPaced.targetRate ?? 0)} /s`, n(w.halfPeakPaced.requestsPerSecond), n(w.halfPeakPaced.p50Ms, 2), n(w.halfPeakPaced.p99Ms, 2), n(w.halfPeakPaced.errors + w.halfPeakPaced.non2xx), `open loop, latency from due time (p99 ${n(w.halfPeakPaced.p99FromSendMs ?? 0, 2)} ms from send)`],
    ['5', `cold storm, Key Vault (${s.vaultLatencyMs} ms a read): ${n(s.devices)} devices x ${s.burstPerDevice} at once`, '', '', n(s.waves[0]?.p99Ms ?? 0, 1), n(s.refused + s.unanswered),
      `vault reads ${n(s.vaultReads)} (${n(s.vaultReadsPerDevice, 2)}/device), peak ${s.peakConcurrentVaultReads} at once (limit ${s.maxConcurrentReads}); wave 1: ${n(s.firstWaveOk)} ok, ${n(s.waves[0]?.retry ?? 0)} x 503; all admitted after ${s.waves.length} waves, ${n(s.secondsToAdmitAll, 1)} s`],
    ['6', `memory, ${n(m.host.keys)} cached device keys`, '', '', '', '', memorySummary(m)],
    ['7', `cold start to 1st device admitted via Key Vault, bundled`, '', n(c.bundled.sinceStartMs, 1), '', '0',
      `median of ${c.starts}: node ${n(c.bundled.bootMs, 1)} + import ${n(c.bundled.importMs, 1)} + admission ${n(c.bundled.firstAdmissionMs, 1)} ms; best ${n(c.bundled.bestSinceStartMs, 1)} ms; CPU ${n(c.bundled.cpuMs, 1)} ms`],
    ['7b', `cold start to 1st device admitted via Key Vault, unbundled`, '', n(c.unbundled.sinceStartMs, 1), '', '0',
      `median of ${c.starts}: node ${n(c.unbundled.bootMs, 1)} + import ${n(c.unbundled.importMs, 1)} + admission ${n(c.unbundled.firstAdmissionMs, 1)} ms; best ${n(c.unbundled.bestSinceStartMs, 1)} ms; CPU ${n(c.unbundled.cpuMs, 1)} ms`],
    ['7c', `cold start as 7, bundled, telemetry on`, '', n(c.bundledTelemetry.sinceStartMs, 1), '', '0',
      `median of ${c.starts}: import ${n(c.bundledTelemetry.importMs, 1)} + admission ${n(c.bundledTelemetry.firstAdmissionMs, 1)} ms; CPU ${n(c.bundledTelemetry.cpuMs, 1)} ms; ${x(c.bundledTelemetry.sinceStartMs / c.bundled.sinceStartMs)} of 7`],
    ['7d', `cold start as 7b, unbundled, telemetry on`, '', n(c.unbundledTelemetry.sinceStartMs, 1), '', '0',
      `median of ${c.starts}: import ${n(c.unbundledTelemetry.importMs, 1)} + admission ${n(c.unbundledTelemetry.firstAdmissionMs, 1)} ms; CPU ${n(c.unbundledTelemetry.cpuMs, 1)} ms`],
    ['8', 'deploy zip (npm run package: dist/app.zip)', '', '', '', '',
      `${n(z.zipBytes / 1024)} KiB, ${n(z.zipFiles)} files${z.unbundled === null ? '' : `; unbundled (dist/functions + production node_modules): ${n(z.unbundled.zipBytes / 1024 ** 2, 1)} MiB, ${n(z.unbundled.zipFiles)} files`}`],
    ['9', `CPU per decision: HTTP host at ${n(cpu.rate)} /s (4b's rate)`, n(cpu.reference.requestsPerSecond), '', '', n(cpu.reference.errors + cpu.reference.non2xx),
      `webhook ${us(cpu.webhookUsPerDecision)}, reference node:http + jose ${us(cpu.referenceUsPerDecision)} at the same rate, medians of ${cpu.rounds.length} paired rounds (ratios ${roundRatios(cpu.rounds, 'webhookUs')}); one jose verify ${us(cpu.rawVerifyUs)}`],
    ['9b', 'CPU per decision: each at its own peak', n(cpu.referencePeak.requestsPerSecond), '', '', n(cpu.referencePeak.errors + cpu.referencePeak.non2xx),
      `webhook ${us(cpu.webhookPeakUsPerDecision)} at ${n(w.peak.requestsPerSecond)} /s (4), reference ${us(cpu.referencePeakUsPerDecision)} at the rate shown`],
    ['9c', `CPU per decision: HTTP host with telemetry on, ${n(cpu.rate)} /s`, n(cpu.telemetry.run.requestsPerSecond), n(cpu.telemetry.run.p50Ms, 2), n(cpu.telemetry.run.p99Ms, 2), n(cpu.telemetry.run.errors + cpu.telemetry.run.non2xx),
      `webhook ${us(cpu.telemetry.usPerDecision)} (${x(cpu.telemetry.vsWithout)} of 9 without; vs reference by round ${roundRatios(cpu.rounds, 'telemetryUs')}); ${n(cpu.telemetry.itemsAccepted)} items accepted by the ingestion stand-in, in ${n(cpu.telemetry.gzippedTracks)} of ${n(cpu.telemetry.tracks)} requests gzip-compressed, over ${n(cpu.telemetry.connections)} connections`],
    ...fleetRows(results.fleet),
    ['11', `npm run demo, spawn to exit, ${results.demo.runs} run${results.demo.runs === 1 ? '' : 's'}`, '', '', '', results.demo.allPassed ? '0' : 'failed',
      `median ${n(results.demo.medianSeconds, 1)} s, worst ${n(results.demo.worstSeconds, 1)} s (${results.demo.seconds.map((v) => n(v, 1)).join(', ')})`],
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => (row[c] ?? '').length)));
  const line = (row: string[]) => `| ${row.map((cell, c) => (c >= 2 && c <= 5 ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join(' | ')} |`;
  const out = [line(rows[0]!), `|${widths.map((w2, c) => (c >= 2 && c <= 5 ? `${'-'.repeat(w2 + 1)}:` : `${'-'.repeat(w2 + 2)}`)).join('|')}|`, ...rows.slice(1).map(line)];
  const pct = (v: number | null) => (v === null ? 'n/a' : `${n(v * 100)}%`);
  out.push('');
  out.push(`ratios: 4/1 HTTP vs floor ${pct(r.httpVsFloor)} (target >= 50%) | 4/2 HTTP vs PyJWT ${x(r.httpVsPython)} (target >= 3x) | 3/1 handler vs floor ${pct(r.handlerVsFloor)}`);
  out.push(`        7/7b cold start bundled vs unbundled ${x(r.coldStartBundledVsUnbundled)} (target <= 0.5x; CPU time ${x(c.cpuRatio)}) | 9 CPU per decision vs reference ${x(cpu.webhookVsReference)} (target <= 1.1x), vs one jose verify ${x(cpu.webhookVsRawVerify)}`);
  out.push(`        telemetry on: 7c/7d cold start bundled vs unbundled ${x(c.telemetryRatio)} (target <= 0.5x) | 9c CPU per decision vs reference ${x(cpu.telemetry.vsReference)} (target <= 1.25x)`);
  out.push(`machine: ${results.machine.cores} cores, ${results.machine.cpu}, ${results.machine.memoryGB} GB, node ${results.machine.node}, load average ${results.machine.loadAverage1m} at start${results.quick ? '  [--quick: smoke figures, not a measurement]' : ''}`);
  return out.join('\n');
}

interface Results {
  version: 1;
  quick: boolean;
  startedAt: string;
  machine: ReturnType<typeof machine>;
  floor: FloorResult;
  python: PythonResult;
  handler: HandlerResult;
  http: HttpResult;
  storm: StormResult;
  memory: MemoryResult;
  fleet: FleetBenchResult;
  demo: DemoResult;
  coldStart: ColdStartResult;
  package: PackageResult;
  cpu: CpuResult;
  ratios: { httpVsFloor: number; httpVsPython: number | null; handlerVsFloor: number; coldStartBundledVsUnbundled: number };
  targets: Record<string, { target: string; value: number | null; met: boolean | null }>;
}

/** `--only cpu|memory`: one comparison, quickly, for working on it; the full run stays the figure of record. */
async function onlySection(only: 'cpu' | 'memory', keyDir: string, bodies: readonly string[], devices: readonly TestDevice[], workDir: string, startedAt: string): Promise<void> {
  const n = (v: number | null, d = 0) => (v === null ? 'n/a' : formatNumber(v, d));
  let figures: Record<string, unknown>;
  let summary: string;
  if (only === 'memory') {
    progress(`memory: ${plan.memoryKeys} cached keys`);
    const m = await memory(workDir);
    figures = { memory: m };
    summary = `memory, ${n(m.host.keys)} cached keys: ${memorySummary(m)}; sample ${m.host.sampleAdmitted}/${m.host.sampleSize} admitted, ${m.host.extraReadsWhenAdmitting} extra reads, ${m.host.servingRefused} refused while serving`;
  } else {
    progress(`HTTP: warm-up, then ${plan.httpSeconds} s at peak and twice ${plan.httpSeconds} s at half the peak`);
    const w = await http(keyDir, bodies, workDir);
    progress(`CPU per decision: the host, the reference server and the host with telemetry on, ${plan.cpuRounds} rounds at the same rate, then raw jose verifications`);
    const cpu = await cpuPerDecision(keyDir, bodies, devices, workDir, w);
    figures = { http: w, cpu };
    summary = `CPU per decision at ${n(cpu.rate)} /s, medians of ${cpu.rounds.length} paired rounds: webhook ${n(cpu.webhookUsPerDecision)} µs, reference ${n(cpu.referenceUsPerDecision)} µs: ${n(cpu.webhookVsReference, 2)}x (rounds ${roundRatios(cpu.rounds, 'webhookUs')})` +
      `; telemetry on ${n(cpu.telemetry.usPerDecision)} µs: ${n(cpu.telemetry.vsReference, 2)}x (rounds ${roundRatios(cpu.rounds, 'telemetryUs')})` +
      ` (at own peaks ${n(cpu.webhookPeakUsPerDecision)} vs ${n(cpu.referencePeakUsPerDecision)} µs); one jose verify ${n(cpu.rawVerifyUs)} µs; peak ${n(w.peak.requestsPerSecond)} /s`;
  }
  mkdirSync(dirname(options.out), { recursive: true });
  writeFileSync(options.out, `${JSON.stringify({ version: 1, quick: options.quick, only, startedAt, machine: machine(), ...figures }, null, 2)}\n`);
  process.stdout.write(`${summary}\nmachine: load average ${machine().loadAverage1m} at the end\nresults: ${options.out}\n`);
}

async function main(): Promise<void> {
  const startedAt = new Date().toISOString();
  const workDir = mkdtempSync(join(tmpdir(), 'dps-bench-'));
  let keyDir: string | undefined;
  try {
    progress(`machine: ${availableParallelism()} cores, node ${process.version}${options.quick ? ' (quick)' : ''}`);
    progress(`making ${plan.devices} devices and their tokens`);
    const devices = await Promise.all(Array.from({ length: plan.devices }, (_, i) => makeDevice(`bench-device-${i}`)));
    keyDir = await keysDir(devices);
    const bodies = await Promise.all(devices.map(async (d) => JSON.stringify(allocationRequest({ registrationId: d.id, token: await tokenFor(d) }))));
    if (options.only !== undefined) return await onlySection(options.only, keyDir, bodies, devices, workDir, startedAt);

    progress(`1/9 floor: ${plan.floorSeconds} s on ${availableParallelism()} threads`);
    const floorResult = await floor();
    progress(`2/9 PyJWT: ${plan.pythonSeconds} s x 2`);
    const pythonResult = await python(devices);
    progress(`3/9 handler in process: ${plan.handlerSeconds} s`);
    const handlerResult = await handler(keyDir, bodies);
    progress(`4/9 HTTP: warm-up, then ${plan.httpSeconds} s at peak and twice ${plan.httpSeconds} s at half the peak`);
    const httpResult = await http(keyDir, bodies, workDir);
    progress(`5/9 cold storm: ${plan.stormDevices} devices x ${plan.stormBurst} against the Key Vault stand-in (${options.vaultLatencyMs} ms a read)`);
    const stormResult = await storm(workDir);
    progress(`6/9 memory: ${plan.memoryKeys} cached keys`);
    const memoryResult = await memory(workDir);
    progress(`7/9 cold start: ${plan.coldStarts} starts each, bundled and unbundled, through the Key Vault stand-in`);
    const coldStartResult = await coldStart(workDir);
    progress(`8/9 deploy zip${options.quick ? '' : ', and the unbundled app zipped for comparison'}`);
    const packageResult = deployPackage();
    progress(`9/9 CPU per decision: the host, the reference server and the host with telemetry on, ${plan.cpuRounds} rounds at the same rate, then raw jose verifications`);
    const cpuResult = await cpuPerDecision(keyDir, bodies, devices, workDir, httpResult);
    progress('10 fleet import against the rate-limited vault stand-in');
    const fleetResult = await fleetBench(fleetPlan(options.quick), progress);
    progress(`11 demo: npm run demo ${plan.demoRuns} time${plan.demoRuns === 1 ? '' : 's'}`);
    const demoResult = await demoDuration(repoRoot, plan.demoRuns);

    const httpRate = httpResult.peak.requestsPerSecond;
    const pythonRate = pythonResult.skipped ? null : pythonResult.decodesPerSecond;
    const ratios = {
      httpVsFloor: httpRate / floorResult.verificationsPerSecond,
      httpVsPython: pythonRate === null ? null : httpRate / pythonRate,
      handlerVsFloor: handlerResult.requestsPerSecond / floorResult.verificationsPerSecond,
      coldStartBundledVsUnbundled: coldStartResult.ratio,
    };
    const httpErrors = [httpResult.peak, httpResult.halfPeak, httpResult.halfPeakPaced].reduce((sum, r) => sum + r.errors + r.non2xx, 0);
    const results: Results = {
      version: 1,
      quick: options.quick,
      startedAt,
      machine: machine(),
      floor: floorResult,
      python: pythonResult,
      handler: handlerResult,
      http: httpResult,
      storm: stormResult,
      memory: memoryResult,
      fleet: fleetResult,
      demo: demoResult,
      coldStart: coldStartResult,
      package: packageResult,
      cpu: cpuResult,
      ratios,
      targets: {
        httpVsFloor: { target: '>= 0.5', value: ratios.httpVsFloor, met: ratios.httpVsFloor >= 0.5 },
        httpVsPython: { target: '>= 3', value: ratios.httpVsPython, met: ratios.httpVsPython === null ? null : ratios.httpVsPython >= 3 },
        httpErrors: { target: '= 0', value: httpErrors, met: httpErrors === 0 },
        p99AtHalfPeakMs: { target: '<= 10', value: httpResult.halfPeak.p99Ms, met: httpResult.halfPeak.p99Ms <= 10 },
        p99AtHalfPeakPacedMs: { target: '<= 10', value: httpResult.halfPeakPaced.p99Ms, met: httpResult.halfPeakPaced.p99Ms <= 10 },
        vaultReadsPerDevice: { target: '= 1', value: stormResult.vaultReadsPerDevice, met: stormResult.vaultReads === stormResult.devices },
        stormLoopbackOnly: { target: '= 0 connections off loopback', value: stormResult.blockedConnections, met: stormResult.blockedConnections === 0 },
        stormAllAdmitted: { target: '= registrations', value: stormResult.ok, met: stormResult.ok === stormResult.registrations },
        peakConcurrentVaultReads: { target: `<= ${stormResult.maxConcurrentReads}`, value: stormResult.peakConcurrentVaultReads, met: stormResult.peakConcurrentVaultReads <= stormResult.maxConcurrentReads },
        memoryRssMB: memoryTarget(memoryResult),
        ...fleetTargets(fleetResult),
        demoSeconds: { target: `<= ${DEMO_TARGET_SECONDS} s, every run passing`, value: demoResult.worstSeconds, met: options.quick ? null : demoResult.allPassed && demoResult.worstSeconds <= DEMO_TARGET_SECONDS },
        coldStartBundledVsUnbundled: { target: '<= 0.5', value: coldStartResult.ratio, met: options.quick ? null : coldStartResult.ratio <= 0.5 },
        coldStartLoopbackOnly: { target: '= 0 connections off loopback', value: coldStartResult.blockedConnections, met: coldStartResult.blockedConnections === 0 },
        coldStartBundledVsUnbundledWithTelemetry: { target: '<= 0.5', value: coldStartResult.telemetryRatio, met: options.quick ? null : coldStartResult.telemetryRatio <= 0.5 },
        cpuPerDecisionWithTelemetryVsReference: {
          target: '<= 1.25',
          value: cpuResult.telemetry.vsReference,
          met: cpuResult.telemetry.vsReference === null || options.quick ? null : cpuResult.telemetry.vsReference <= 1.25,
        },
        telemetryEgressKeptOnLoopback: { target: 'informational: the exporter settings polls the egress trap refused', value: cpuResult.telemetry.blockedEgress, met: null },
        telemetryItemsAccepted: { target: '> 0', value: cpuResult.telemetry.itemsAccepted, met: cpuResult.telemetry.itemsAccepted > 0 },
        zipBytes: { target: '<= 1 MB (1,000,000 bytes)', value: packageResult.zipBytes, met: packageResult.zipBytes <= 1_000_000 },
        cpuPerDecisionVsReference: {
          target: '<= 1.1',
          value: cpuResult.webhookVsReference,
          met: cpuResult.webhookVsReference === null || options.quick ? null : cpuResult.webhookVsReference <= 1.1,
        },
      },
    };

    mkdirSync(dirname(options.out), { recursive: true });
    writeFileSync(options.out, `${JSON.stringify(results, null, 2)}\n`);
    process.stdout.write(`${table(results)}\n`);
    const missed = Object.entries(results.targets).filter(([, t]) => t.met === false).map(([name]) => name);
    process.stdout.write(`targets missed: ${missed.length === 0 ? 'none' : missed.join(', ')}\nresults: ${options.out}\n`);
  } finally {
    rmSync(workDir, { recursive: true, force: true });
    if (keyDir !== undefined) rmSync(keyDir, { recursive: true, force: true });
  }
}

await main();
