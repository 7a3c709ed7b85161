/**
 * `npm run demo`: the whole flow on this machine, nothing off loopback. Creates throwaway device keys and enrollments,
 * starts the webhook (the `npm start` host) and the local DPS with its local IoT Hub, registers devices through the
 * sample device's `register` (the official Azure IoT SDK) over HTTPS and MQTT, connects each admitted device to its
 * hub with `connect`, and prints what happened. Exits 0 only if every step did what it shows: two devices admitted,
 * three refused by the webhook, and both admitted devices connected, read the desired properties the webhook put in
 * their initial twin, and had their telemetry received by the hub. The steps are DEMO_STEPS, in order.
 *
 * Prints no secret: not the symmetric keys, the group key, the function key, a SAS or a token.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { base64url } from 'jose';
import { startLocalDps, type LocalDps, type RegistrationRecord, type EnrollmentsFile } from '../dps-emulator/index.js';
import { startLocalHost, type LocalHost } from '../local-host/server.js';
import { keygen } from '../sample-device/commands/keygen.js';
import { register, type RegisterOptions } from '../sample-device/commands/register.js';
import { connect } from '../sample-device/commands/connect.js';
import { SampleDeviceError } from '../sample-device/errors.js';
import { loadPrivateKeyFile } from '../sample-device/key-file.js';
import { signDeviceToken } from '../sample-device/jwt.js';
import type { TransportKind } from '../sample-device/transport.js';
import { isEntryPoint } from '../sample-device/entry-point.js';
import { PORTAL_STEP_WEBHOOK_ENV, runPortalStep } from './portal-step.js';

export const HUBS = ['hub-eu.azure-devices.net', 'hub-us.azure-devices.net'];
const ID_SCOPE = '0ne00DEMO01';
const GROUP_ID = 'factory-line-7';
const TWIN_TEMPLATE = { tags: { model: 's1', site: 'demo' }, properties: { desired: { telemetryInterval: 30 } } };
/** Telemetry messages each connected device sends. */
const TELEMETRY_COUNT = 3;

type Expected = 'assigned' | 'refused';

interface Scenario {
  readonly title: string;
  readonly registrationId: string;
  readonly enrollment: 'individual' | 'group';
  readonly transport: TransportKind;
  readonly token: string;
  readonly expected: Expected;
  /** Webhook reason codes that count as the expected refusal. */
  readonly reasons?: readonly string[];
  readonly replaceToken?: RegisterOptions['replaceToken'];
}

export interface DemoRow {
  readonly title: string;
  readonly registrationId: string;
  readonly enrollment: string;
  readonly transport: TransportKind;
  readonly token: string;
  readonly expected: Expected;
  readonly outcome: string;
  /** Assigned hub, or DPS's error code. */
  readonly detail: string;
  /** What the webhook decided, from its own log line. */
  readonly webhookReason: string;
  readonly ok: boolean;
  readonly ms: number;
}

export interface DemoReport {
  readonly ok: boolean;
  readonly rows: readonly DemoRow[];
  readonly hubRows: readonly HubRow[];
  readonly records: readonly RegistrationRecord[];
}

export interface DemoOptions {
  readonly print?: (line: string) => void;
  readonly signal?: AbortSignal;
}

/** Edits the claims after signing (pushes exp a year out) and keeps the signature: what an attacker would try. */
export function tamperWithClaims(token: string): string {
  const [header, payload, signature] = token.split('.');
  if (header === undefined || payload === undefined || signature === undefined) throw new TypeError('not a compact JWS');
  const claims = JSON.parse(new TextDecoder().decode(base64url.decode(payload))) as { exp: number };
  claims.exp += 365 * 24 * 3600;
  return `${header}.${base64url.encode(JSON.stringify(claims))}.${signature}`;
}

const randomKey = (bytes: number): string => randomBytes(bytes).toString('base64');

function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Everything the steps share. A step reads what earlier steps left here and adds its own. */
export interface DemoContext {
  readonly print: (line: string) => void;
  readonly signal: AbortSignal | undefined;
  readonly work: string;
  readonly webhookLog: Record<string, unknown>[];
  keysDir?: string;
  keyFiles?: Map<string, string>;
  functionKey?: string;
  host?: LocalHost;
  dps?: LocalDps;
  individualKey?: string;
  groupKey?: string;
  rows: DemoRow[];
  hubRows: HubRow[];
  /** Each step's verdict; the demo passes only if every step passed. */
  readonly verdicts: { step: string; ok: boolean }[];
}

/** One device's life after assignment, as the local IoT Hub saw it. */
export interface HubRow {
  readonly deviceId: string;
  readonly hub: string;
  readonly connected: boolean;
  /** Desired properties the device read, without `$version`. */
  readonly desiredRead: Record<string, unknown>;
  /** Desired properties the webhook put in the initial twin. */
  readonly desiredByWebhook: Record<string, unknown>;
  readonly telemetryReceived: number;
  readonly sample: string;
  readonly ok: boolean;
}

export interface DemoStep {
  readonly title: string;
  /** Returns false (or throws) when what it shows did not happen. */
  run(ctx: DemoContext): Promise<boolean>;
}

const DEVICES = ['sensor-0042', 'line7-0001', 'line7-0002', 'line7-0099'];

/** 1. Factory: key pairs; the webhook's key folder gets the public halves, except line7-0099's (never delivered). */
const factoryKeys: DemoStep = {
  title: 'factory keys',
  async run(ctx) {
    ctx.keysDir = join(ctx.work, 'webhook-keys');
    await mkdir(ctx.keysDir, { mode: 0o700 });
    ctx.keyFiles = new Map();
    for (const id of DEVICES) {
      const pair = await keygen({ outDir: join(ctx.work, 'devices', id), name: id });
      ctx.keyFiles.set(id, pair.privateKeyFile);
      if (id !== 'line7-0099') await copyFile(pair.publicKeyFile, join(ctx.keysDir, `${id}.pem`));
    }
    ctx.print(`Created P-256 keys for ${DEVICES.join(', ')} in a temp dir; public keys on file for all but line7-0099.`);
    return true;
  },
};

/** 2. The webhook, as `npm start` serves it, behind a function key DPS must present. */
const startWebhook: DemoStep = {
  title: 'webhook',
  async run(ctx) {
    ctx.functionKey = randomBytes(24).toString('base64url');
    ctx.host = await startLocalHost({
      env: {
        DEVICE_KEYS_DIR: ctx.keysDir!,
        WEBHOOK_FUNCTION_KEY: ctx.functionKey,
        DPS_ID_SCOPE: ID_SCOPE,
        // The twin every admitted device starts with (the webhook adds its provisioning tags).
        INITIAL_TWIN_TEMPLATE: JSON.stringify(TWIN_TEMPLATE),
        ...PORTAL_STEP_WEBHOOK_ENV,
      },
      port: 0,
      log: (line) => {
        try {
          ctx.webhookLog.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // Not a decision line; the demo shows only decisions.
        }
      },
    });
    ctx.print(`Webhook listening on ${ctx.host.url} (function key required; not shown).`);
    return true;
  },
};

/** 3. The local DPS and IoT Hub: one individual enrollment and one group, both custom allocation to the webhook. */
const startDps: DemoStep = {
  title: 'local DPS and IoT Hub',
  async run(ctx) {
    ctx.individualKey = randomKey(32);
    ctx.groupKey = randomKey(64);
    const custom = { allocationPolicy: 'custom' as const, customAllocationDefinition: { webhookUrl: `${ctx.host!.url}?code=${ctx.functionKey}`, apiVersion: '2021-10-01' } };
    const enrollments: EnrollmentsFile = {
      individualEnrollments: [
        {
          registrationId: 'sensor-0042',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: ctx.individualKey, secondaryKey: randomKey(32) } },
          provisioningStatus: 'enabled',
          ...custom,
          iotHubs: HUBS,
        },
      ],
      enrollmentGroups: [
        {
          enrollmentGroupId: GROUP_ID,
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: ctx.groupKey, secondaryKey: randomKey(64) } },
          provisioningStatus: 'enabled',
          ...custom,
          iotHubs: HUBS,
        },
      ],
    };
    // Retry-After 1 s instead of DPS's 3 s keeps the demo short; whole seconds, as DPS (and the Python SDK) use.
    ctx.dps = await startLocalDps({ enrollments, idScope: ID_SCOPE, retryAfterSeconds: 1 });
    ctx.print(`Local DPS (id scope ${ID_SCOPE}): HTTPS on ${ctx.dps.httpsHost}, MQTT on ${ctx.dps.mqttHost}; hubs ${HUBS.join(', ')}.`);
    ctx.print(`Local IoT Hub for both hubs on ${ctx.dps.hub.host} (devices connect with GatewayHostName=${ctx.dps.hub.host}).`);
    ctx.print('');
    return true;
  },
};

/** 4. Devices register through the sample device's `register` (official SDK): two admitted, three refused. */
const registerDevices: DemoStep = {
  title: 'registrations',
  async run(ctx) {
    const dps = ctx.dps!;
    const key = (s: Scenario): Pick<RegisterOptions, 'symmetricKey' | 'groupKey'> =>
      s.enrollment === 'individual' ? { symmetricKey: ctx.individualKey! } : { groupKey: ctx.groupKey! };
    const sensorKey = await loadPrivateKeyFile(ctx.keyFiles!.get('sensor-0042')!);
    const scenarios: Scenario[] = [
      { title: 'individual device, own token', registrationId: 'sensor-0042', enrollment: 'individual', transport: 'http', token: 'own', expected: 'assigned' },
      { title: 'group member, own token', registrationId: 'line7-0001', enrollment: 'group', transport: 'mqtt', token: 'own', expected: 'assigned' },
      {
        title: 'claims edited after signing',
        registrationId: 'sensor-0042',
        enrollment: 'individual',
        transport: 'mqtt',
        token: 'tampered',
        expected: 'refused',
        reasons: ['token_signature_invalid'],
        replaceToken: tamperWithClaims,
      },
      {
        title: "presents sensor-0042's token",
        registrationId: 'line7-0002',
        enrollment: 'group',
        transport: 'http',
        token: "sensor-0042's",
        expected: 'refused',
        reasons: ['token_signature_invalid', 'token_registration_mismatch', 'token_key_unknown'],
        // A genuine, unexpired token, signed by sensor-0042's key for sensor-0042: valid, but not this device's.
        replaceToken: () => signDeviceToken({ privateKey: sensorKey, registrationId: 'sensor-0042', idScope: ID_SCOPE, provisioningHost: dps.httpsHost }),
      },
      { title: 'no public key on file', registrationId: 'line7-0099', enrollment: 'group', transport: 'mqtt', token: 'own', expected: 'refused', reasons: ['device_key_not_found'] },
    ];

    for (const s of scenarios) {
      if (ctx.signal?.aborted) throw new SampleDeviceError('interrupted', 'demo interrupted');
      const seen = ctx.webhookLog.length;
      const t0 = Date.now();
      let outcome: string;
      let detail: string;
      try {
        const result = await register({
          registrationId: s.registrationId,
          idScope: ID_SCOPE,
          privateKeyFile: ctx.keyFiles!.get(s.registrationId)!,
          ...key(s),
          host: s.transport === 'http' ? dps.httpsHost : dps.mqttHost,
          transport: s.transport,
          caFile: dps.caFile,
          timeoutMs: 15_000,
          ...(ctx.signal !== undefined && { signal: ctx.signal }),
          ...(s.replaceToken !== undefined && { replaceToken: s.replaceToken }),
        });
        outcome = 'assigned';
        detail = result.assignedHub;
      } catch (error) {
        if (!(error instanceof SampleDeviceError) || error.code === 'interrupted') throw error;
        outcome = error.code;
        detail = error.dpsErrorCode !== undefined ? `DPS ${error.dpsErrorCode}` : error.message;
      }
      const decision = ctx.webhookLog.slice(seen).at(-1);
      const webhookReason = typeof decision?.code === 'string' ? decision.code : '(not called)';
      const ok =
        s.expected === 'assigned'
          ? outcome === 'assigned' && HUBS.includes(detail) && webhookReason === 'assigned'
          : outcome === 'refused' && detail === 'DPS 400207' && (s.reasons ?? []).includes(webhookReason);
      const row: DemoRow = {
        title: s.title,
        registrationId: s.registrationId,
        enrollment: s.enrollment === 'group' ? `group ${GROUP_ID}` : 'individual',
        transport: s.transport,
        token: s.token,
        expected: s.expected,
        outcome,
        detail,
        webhookReason,
        ok,
        ms: Date.now() - t0,
      };
      ctx.rows.push(row);
      ctx.print(`${ok ? 'ok  ' : 'FAIL'} ${s.registrationId} over ${s.transport} (${s.title}): ${outcome}, ${detail}, webhook: ${webhookReason}`);
    }

    ctx.print('');
    ctx.print(
      table(
        ['device', 'enrollment', 'via', 'token', 'expected', 'outcome', 'hub / DPS error', 'webhook decision', 'ms', 'result'],
        ctx.rows.map((r) => [r.registrationId, r.enrollment, r.transport, r.token, r.expected, r.outcome, r.detail, r.webhookReason, String(r.ms), r.ok ? 'ok' : 'FAIL']),
      ),
    );
    const assigned = dps.registrations().find((r) => r.registrationId === 'sensor-0042' && r.status === 'assigned');
    if (assigned !== undefined) {
      ctx.print('');
      ctx.print(`sensor-0042 as DPS recorded it: hub ${assigned.assignedHub}, device id ${assigned.deviceId}, substatus ${assigned.substatus ?? '-'}`);
      ctx.print(`  initial twin: ${JSON.stringify(assigned.initialTwin ?? null)}`);
      ctx.print(`  payload returned to the device: ${JSON.stringify(assigned.payload ?? null)}`);
    }
    return ctx.rows.length === scenarios.length && ctx.rows.every((r) => r.ok) && assigned !== undefined;
  },
};

/**
 * 5. Each assigned device connects to its hub (the local one, through GatewayHostName) with the sample device's
 * `connect` (official SDK): reads its desired properties, reports back, and sends TELEMETRY_COUNT messages; after the
 * first, the back end lowers telemetryInterval to 1 s and the device follows.
 */
const connectDevices: DemoStep = {
  title: 'hub connections',
  async run(ctx) {
    const dps = ctx.dps!;
    const assigned = ctx.rows.filter((r) => r.expected === 'assigned' && r.outcome === 'assigned');
    ctx.print('');
    const rows = await Promise.all(
      assigned.map(async (row): Promise<HubRow> => {
        const record = dps.registrations().filter((r) => r.registrationId === row.registrationId && r.status === 'assigned').at(-1)!;
        const hub = record.assignedHub!;
        const deviceId = record.deviceId!;
        const desiredByWebhook = { ...(record.initialTwin?.properties?.desired ?? {}) };
        let firstSent = false;
        const lowered = setInterval(() => {
          if (firstSent) dps.hub.updateDesired(hub, deviceId, { telemetryInterval: 1 });
        }, 200);
        try {
          const result = await connect({
            hub,
            deviceId,
            ...(row.enrollment === 'individual' ? { symmetricKey: ctx.individualKey! } : { groupKey: ctx.groupKey! }),
            hubHost: dps.hub.host,
            caFile: dps.caFile,
            count: TELEMETRY_COUNT,
            ...(ctx.signal !== undefined && { signal: ctx.signal }),
            print: (line) => {
              if (line.startsWith('telemetry 1/')) firstSent = true;
              if (line.startsWith('desired update')) clearInterval(lowered);
              ctx.print(`  ${deviceId}: ${line}`);
            },
          });
          const seen = dps.hub.device(hub, deviceId);
          const desiredRead = Object.fromEntries(Object.entries(result.desired).filter(([k]) => k !== '$version'));
          const telemetryReceived = seen?.telemetryCount ?? 0;
          return {
            deviceId,
            hub,
            connected: true,
            desiredRead,
            desiredByWebhook,
            telemetryReceived,
            sample: seen?.lastTelemetry?.body ?? '',
            ok: isDeepStrictEqual(desiredRead, desiredByWebhook) && telemetryReceived === TELEMETRY_COUNT && result.telemetrySent === TELEMETRY_COUNT,
          };
        } catch (error) {
          if (error instanceof SampleDeviceError && error.code === 'interrupted') throw error;
          ctx.print(`FAIL ${deviceId}: ${error instanceof Error ? error.message : String(error)}`);
          return { deviceId, hub, connected: false, desiredRead: {}, desiredByWebhook, telemetryReceived: 0, sample: '', ok: false };
        } finally {
          clearInterval(lowered);
        }
      }),
    );
    ctx.hubRows.push(...rows);
    ctx.print('');
    ctx.print(
      table(
        ['device', 'hub', 'connected', 'desired read = webhook twin', 'telemetry received', 'sample message', 'result'],
        rows.map((r) => [
          r.deviceId,
          r.hub,
          r.connected ? 'yes' : 'no',
          `${isDeepStrictEqual(r.desiredRead, r.desiredByWebhook) ? 'yes' : 'NO'} ${JSON.stringify(r.desiredRead)}`,
          String(r.telemetryReceived),
          r.sample,
          r.ok ? 'ok' : 'FAIL',
        ]),
      ),
    );
    return rows.length === 2 && rows.every((r) => r.ok);
  },
};

/** 4b. The factory flow: a device refused while disabled, activated through the portal, then admitted (portal-step.ts). */
const activateInPortal: DemoStep = {
  title: 'portal activation',
  async run(ctx) {
    const result = await runPortalStep({
      work: ctx.work,
      keysDir: ctx.keysDir!,
      dps: ctx.dps!,
      idScope: ID_SCOPE,
      groupKey: ctx.groupKey!,
      webhookLog: ctx.webhookLog,
      print: ctx.print,
      ...(ctx.signal !== undefined && { signal: ctx.signal }),
    });
    return result.ok;
  },
};

/** The demo, in order. A new step goes where it belongs in this list. */
export const DEMO_STEPS: readonly DemoStep[] = [factoryKeys, startWebhook, startDps, registerDevices, activateInPortal, connectDevices];

export async function runDemo(options: DemoOptions = {}): Promise<DemoReport> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const started = Date.now();
  const ctx: DemoContext = {
    print,
    signal: options.signal,
    work: await mkdtemp(join(tmpdir(), 'dps-jwt-demo-')),
    webhookLog: [],
    rows: [],
    hubRows: [],
    verdicts: [],
  };
  try {
    for (const step of DEMO_STEPS) {
      if (ctx.signal?.aborted) throw new SampleDeviceError('interrupted', 'demo interrupted');
      ctx.verdicts.push({ step: step.title, ok: await step.run(ctx) });
    }
    const ok = ctx.verdicts.every((v) => v.ok);
    const devicesOk = ctx.rows.filter((r) => r.ok).length;
    print('');
    print(
      `${ok ? 'PASS' : 'FAIL'}: ${devicesOk}/${ctx.rows.length} devices ended as expected; ` +
        `${ctx.hubRows.filter((r) => r.ok).length}/${ctx.hubRows.length} connected devices read the webhook's twin and had their telemetry received; ` +
        `in ${((Date.now() - started) / 1000).toFixed(1)} s.` +
        (ok ? '' : ` Failed: ${ctx.verdicts.filter((v) => !v.ok).map((v) => v.step).join(', ')}.`),
    );
    return { ok, rows: ctx.rows, hubRows: ctx.hubRows, records: ctx.dps?.registrations() ?? [] };
  } finally {
    await ctx.dps?.close().catch(() => undefined);
    await ctx.host?.close().catch(() => undefined);
    await rm(ctx.work, { recursive: true, force: true });
  }
}

if (isEntryPoint(import.meta.url)) {
  const controller = new AbortController();
  // Ctrl-C: stop the registration in flight, then the servers and the temp dir go in runDemo's finally.
  process.once('SIGINT', () => {
    process.stderr.write('\nInterrupted; stopping the local DPS and the webhook...\n');
    controller.abort();
    process.once('SIGINT', () => process.exit(130));
  });
  let code: number;
  try {
    const report = await runDemo({ signal: controller.signal });
    code = report.ok ? 0 : 1;
  } catch (error) {
    if (error instanceof SampleDeviceError && error.code === 'interrupted') {
      code = 130;
    } else {
      process.stderr.write(`demo failed: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}\n`);
      code = 1;
    }
  }
  process.exitCode = code;
  // An SDK timer must not hold the exit once everything is closed.
  setTimeout(() => process.exit(code), 2000).unref();
}
