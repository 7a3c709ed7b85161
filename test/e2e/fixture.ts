/**
 * Whole-flow fixture: real device keys (sample-device keygen), the real webhook (the shipped bundle, package.json
 * `main`, in a stand-in of the Functions host: test/support/functions-host.ts), the real local DPS, and devices
 * registering through the sample device's `register` (the official SDK). Everything on loopback.
 * Every log line of the webhook and the DPS is kept, so tests can assert that no secret ever reached a log.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { startLocalDps, type EnrollmentsFile, type LocalDps, type LocalDpsOptions } from '../../dps-emulator/index.js';
import { keygen } from '../../sample-device/commands/keygen.js';
import { register, type RegisterOptions, type RegisterResult } from '../../sample-device/commands/register.js';
import { SampleDeviceError } from '../../sample-device/errors.js';
import { startBundledFunction, type BundledFunction } from '../support/bundle-host.js';

export const HUBS = ['hub-eu.azure-devices.net', 'hub-us.azure-devices.net'];
export const ID_SCOPE = '0ne00E2E001';
export const REPO = resolve(import.meta.dirname, '../..');

export const randomKey = (bytes = 32): string => randomBytes(bytes).toString('base64');

export interface Device {
  readonly id: string;
  readonly privateKeyFile: string;
  readonly publicKeyFile: string;
}

/** Factory keys for `ids`; the public key of each goes to the webhook's key folder unless listed in `unknown`. */
export async function makeDevices(work: string, keysDir: string, ids: readonly string[], unknown: readonly string[] = []): Promise<Map<string, Device>> {
  const devices = new Map<string, Device>();
  for (const id of ids) {
    const pair = await keygen({ outDir: join(work, 'devices', id), name: id });
    if (!unknown.includes(id)) await copyFile(pair.publicKeyFile, join(keysDir, `${id}.pem`));
    devices.set(id, { id, privateKeyFile: pair.privateKeyFile, publicKeyFile: pair.publicKeyFile });
  }
  return devices;
}

export interface Outcome {
  readonly result?: RegisterResult;
  readonly error?: SampleDeviceError;
  /** The webhook's reason code for this registration, from its log ('(not called)' when DPS never called it). */
  readonly webhookReason: string;
  readonly webhookCalls: number;
}

export interface Flow {
  readonly work: string;
  readonly keysDir: string;
  readonly functionKey: string;
  readonly webhook: BundledFunction;
  /** The webhook's decision lines so far, once every line it logged before the call has arrived (bundle-host.ts). */
  webhookLog(): Promise<readonly Record<string, unknown>[]>;
  readonly dpsLog: string[];
  dps?: LocalDps;
  /** Starts (or restarts) the local DPS with these enrollments; `webhookUrl` defaults to the webhook with its key. */
  startDps(enrollments: EnrollmentsFile, options?: Partial<LocalDpsOptions>): Promise<LocalDps>;
  webhookUrl(base?: string, key?: string): string;
  /** Registers through the sample device; never throws for a DPS/webhook refusal, only for a bug. */
  register(options: Omit<RegisterOptions, 'idScope' | 'host' | 'caFile'> & { host?: string }): Promise<Outcome>;
  /** Every log line either server wrote, for secret checks. */
  allLogText(): Promise<string>;
  close(): Promise<void>;
}

/** `env` adds to (or overrides) the webhook's settings. */
export async function startFlow(env: Readonly<Record<string, string>> = {}): Promise<Flow> {
  const work = await mkdtemp(join(tmpdir(), 'dps-jwt-e2e-'));
  const keysDir = join(work, 'webhook-keys');
  await mkdir(keysDir, { mode: 0o700 });
  const functionKey = randomBytes(24).toString('base64url');
  const webhookLog: Record<string, unknown>[] = [];
  const rawWebhookLog: string[] = [];
  const dpsLog: string[] = [];
  const webhook = await startBundledFunction({
    functionKey,
    env: {
      DEVICE_KEYS_DIR: keysDir,
      DPS_ID_SCOPE: ID_SCOPE,
      INITIAL_TWIN_TEMPLATE: JSON.stringify({ tags: { model: 's1' }, properties: { desired: { telemetryInterval: 30 } } }),
      // Keys are added while the webhook runs; do not let a cached "not found" hide them.
      KEY_CACHE_NEGATIVE_TTL_SECONDS: '0',
      ...env,
    },
    log: (line) => {
      rawWebhookLog.push(line);
      try {
        webhookLog.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // Only decision lines are JSON.
      }
    },
  });
  const flow: Flow = {
    work,
    keysDir,
    functionKey,
    webhook,
    webhookLog: async () => {
      await webhook.settled();
      return webhookLog;
    },
    dpsLog,
    webhookUrl: (base = webhook.url, key = functionKey) => `${base}?code=${encodeURIComponent(key)}`,
    async startDps(enrollments, options = {}) {
      await flow.dps?.close();
      flow.dps = await startLocalDps({
        enrollments,
        idScope: ID_SCOPE,
        // DPS says 3 s; 1 s (whole seconds, as the Python SDK needs) keeps the suite fast.
        retryAfterSeconds: 1,
        webhookRetry: { attempts: 3, firstDelayMs: 50, incrementMs: 50 },
        webhookTimeoutMs: 5_000,
        log: (line) => dpsLog.push(line),
        ...options,
      });
      return flow.dps;
    },
    async register(options) {
      const dps = flow.dps;
      if (dps === undefined) throw new Error('startDps first');
      await webhook.settled();
      const seen = webhookLog.length;
      const transport = options.transport ?? 'http';
      let result: RegisterResult | undefined;
      let error: SampleDeviceError | undefined;
      try {
        result = await register({
          idScope: ID_SCOPE,
          host: transport === 'http' ? dps.httpsHost : dps.mqttHost,
          caFile: dps.caFile,
          timeoutMs: 20_000,
          ...options,
          transport,
        });
      } catch (e) {
        if (!(e instanceof SampleDeviceError)) throw e;
        error = e;
      }
      await webhook.settled();
      const mine = webhookLog.slice(seen);
      const last = mine.at(-1);
      return {
        ...(result !== undefined && { result }),
        ...(error !== undefined && { error }),
        webhookReason: typeof last?.code === 'string' ? last.code : '(not called)',
        webhookCalls: mine.length,
      };
    },
    allLogText: async () => {
      await webhook.settled();
      return [...rawWebhookLog, ...dpsLog].join('\n');
    },
    async close() {
      await flow.dps?.close();
      await webhook.close();
      await rm(work, { recursive: true, force: true });
    },
  };
  return flow;
}

export function individual(registrationId: string, primaryKey: string, webhookUrl: string, extra: Record<string, unknown> = {}) {
  return {
    registrationId,
    attestation: { type: 'symmetricKey' as const, symmetricKey: { primaryKey, secondaryKey: randomKey() } },
    provisioningStatus: 'enabled' as const,
    allocationPolicy: 'custom' as const,
    customAllocationDefinition: { webhookUrl, apiVersion: '2021-10-01' },
    iotHubs: HUBS,
    ...extra,
  };
}

export function group(enrollmentGroupId: string, primaryKey: string, webhookUrl: string, extra: Record<string, unknown> = {}) {
  return {
    enrollmentGroupId,
    attestation: { type: 'symmetricKey' as const, symmetricKey: { primaryKey, secondaryKey: randomKey(64) } },
    provisioningStatus: 'enabled' as const,
    allocationPolicy: 'custom' as const,
    customAllocationDefinition: { webhookUrl, apiVersion: '2021-10-01' },
    iotHubs: HUBS,
    ...extra,
  };
}

/**
 * A loopback proxy in front of the real webhook that answers 503 to the first `failures` requests (a webhook whose
 * Key Vault is briefly unavailable), then forwards everything unchanged.
 */
export async function startFlakyProxy(target: string, failures: number): Promise<{ url: string; statuses: number[]; close(): Promise<void> }> {
  const targetUrl = new URL(target);
  const statuses: number[] = [];
  let left = failures;
  const server: Server = createServer((req, res) => {
    if (left > 0) {
      left -= 1;
      statuses.push(503);
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify({ code: 'key_store_unavailable' }));
      return;
    }
    const upstream = request(
      { host: targetUrl.hostname, port: targetUrl.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        statuses.push(answer.statusCode ?? 0);
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${targetUrl.pathname}`,
    statuses,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, await newestMtime(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, (await stat(path)).mtimeMs);
  }
  return newest;
}

/** Output files are older than a source under the directories the e2e children load. */
async function buildIsStale(outputs: readonly string[]): Promise<boolean> {
  let oldestOutput = Infinity;
  try {
    for (const output of outputs) oldestOutput = Math.min(oldestOutput, (await stat(output)).mtimeMs);
  } catch {
    return true;
  }
  let newestSource = 0;
  for (const dir of ['demo', 'sample-device', 'dps-emulator', 'local-host', 'functions']) {
    newestSource = Math.max(newestSource, await newestMtime(join(REPO, dir)));
  }
  return newestSource > oldestOutput;
}

/**
 * `npm test` builds first; when the e2e tests run alone, build if dist/ is missing or older than a source, so the child
 * processes run the code under test and not a stale build. Test files run in parallel workers, so the build is
 * guarded by a lock directory: one worker builds, the others wait and see a fresh build.
 */
export async function ensureBuilt(): Promise<void> {
  const outputs = ['dist/demo/run.js', 'dist/sample-device/cli.js'].map((p) => join(REPO, p));
  if (!(await buildIsStale(outputs))) return;
  await mkdir(join(REPO, 'dist'), { recursive: true });
  const lock = join(REPO, 'dist', '.e2e-build.lock');
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`${lock} held for 2 minutes; remove it if no build is running`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    if (await buildIsStale(outputs)) {
      // tsc exits non-zero on a type error anywhere but still emits; the tests then judge what was built.
      await promisify(execFile)(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(REPO, 'tsconfig.json')], { cwd: REPO }).catch(() => undefined);
    }
    for (const output of outputs) await stat(output);
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}
