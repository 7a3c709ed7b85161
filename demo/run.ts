/**
 * `npm run demo`: the whole flow on this machine, nothing off loopback. Creates throwaway device keys and enrollments,
 * starts the webhook (the `npm start` host) and the local DPS, registers devices through the sample device's
 * `register` (the official Azure IoT SDK) over HTTPS and MQTT, and prints what happened. Exits 0 only if every
 * device ended as expected: two admitted, three refused by the webhook.
 *
 * Prints no secret: not the symmetric keys, the group key, the function key, a SAS or a token.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { base64url } from 'jose';
import { startLocalDps, type LocalDps, type RegistrationRecord, type EnrollmentsFile } from '../dps-emulator/index.js';
import { startLocalHost, type LocalHost } from '../local-host/server.js';
import { keygen } from '../sample-device/commands/keygen.js';
import { register, type RegisterOptions } from '../sample-device/commands/register.js';
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

export async function runDemo(options: DemoOptions = {}): Promise<DemoReport> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const started = Date.now();
  const work = await mkdtemp(join(tmpdir(), 'dps-jwt-demo-'));
  let dps: LocalDps | undefined;
  let host: LocalHost | undefined;
  try {
    // 1. Factory: key pairs for three devices; the webhook's key folder gets the public halves. line7-0099 is
    //    enrolled through the group but its key never reached the webhook.
    const keysDir = join(work, 'webhook-keys');
    await mkdir(keysDir, { mode: 0o700 });
    const devices = ['sensor-0042', 'line7-0001', 'line7-0002', 'line7-0099'];
    const keyFiles = new Map<string, string>();
    for (const id of devices) {
      const pair = await keygen({ outDir: join(work, 'devices', id), name: id });
      keyFiles.set(id, pair.privateKeyFile);
      if (id !== 'line7-0099') await copyFile(pair.publicKeyFile, join(keysDir, `${id}.pem`));
    }
    print(`Created P-256 keys for ${devices.join(', ')} in a temp dir; public keys on file for all but line7-0099.`);

    // 2. The webhook, as `npm start` serves it, behind a function key DPS must present.
    const functionKey = randomBytes(24).toString('base64url');
    const webhookLog: Record<string, unknown>[] = [];
    host = await startLocalHost({
      env: {
        DEVICE_KEYS_DIR: keysDir,
        WEBHOOK_FUNCTION_KEY: functionKey,
        DPS_ID_SCOPE: ID_SCOPE,
        // The twin every admitted device starts with (the webhook adds its provisioning tags).
        INITIAL_TWIN_TEMPLATE: JSON.stringify(TWIN_TEMPLATE),
        ...PORTAL_STEP_WEBHOOK_ENV,
      },
      port: 0,
      log: (line) => {
        try {
          webhookLog.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // Not a decision line; the demo shows only decisions.
        }
      },
    });
    print(`Webhook listening on ${host.url} (function key required; not shown).`);

    // 3. The local DPS with one individual enrollment and one group, both custom allocation to the webhook.
    const individualKey = randomKey(32);
    const groupKey = randomKey(64);
    const custom = { allocationPolicy: 'custom' as const, customAllocationDefinition: { webhookUrl: `${host.url}?code=${functionKey}`, apiVersion: '2021-10-01' } };
    const enrollments: EnrollmentsFile = {
      individualEnrollments: [
        {
          registrationId: 'sensor-0042',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: individualKey, secondaryKey: randomKey(32) } },
          provisioningStatus: 'enabled',
          ...custom,
          iotHubs: HUBS,
        },
      ],
      enrollmentGroups: [
        {
          enrollmentGroupId: GROUP_ID,
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: randomKey(64) } },
          provisioningStatus: 'enabled',
          ...custom,
          iotHubs: HUBS,
        },
      ],
    };
    // Retry-After 0.2 s instead of DPS's 3 s keeps the demo short; the protocol is otherwise DPS's.
    dps = await startLocalDps({ enrollments, idScope: ID_SCOPE, retryAfterSeconds: 0.2 });
    print(`Local DPS (id scope ${ID_SCOPE}): HTTPS on ${dps.httpsHost}, MQTT on ${dps.mqttHost}; hubs ${HUBS.join(', ')}.`);
    print('');

    const key = (s: Scenario): Pick<RegisterOptions, 'symmetricKey' | 'groupKey'> =>
      s.enrollment === 'individual' ? { symmetricKey: individualKey } : { groupKey };
    const sensorKey = await loadPrivateKeyFile(keyFiles.get('sensor-0042')!);
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
        replaceToken: () => signDeviceToken({ privateKey: sensorKey, registrationId: 'sensor-0042', idScope: ID_SCOPE, provisioningHost: dps!.httpsHost }),
      },
      { title: 'no public key on file', registrationId: 'line7-0099', enrollment: 'group', transport: 'mqtt', token: 'own', expected: 'refused', reasons: ['device_key_not_found'] },
    ];

    const rows: DemoRow[] = [];
    for (const s of scenarios) {
      if (options.signal?.aborted) throw new SampleDeviceError('interrupted', 'demo interrupted');
      const seen = webhookLog.length;
      const t0 = Date.now();
      let outcome: string;
      let detail: string;
      try {
        const result = await register({
          registrationId: s.registrationId,
          idScope: ID_SCOPE,
          privateKeyFile: keyFiles.get(s.registrationId)!,
          ...key(s),
          host: s.transport === 'http' ? dps.httpsHost : dps.mqttHost,
          transport: s.transport,
          caFile: dps.caFile,
          timeoutMs: 15_000,
          ...(options.signal !== undefined && { signal: options.signal }),
          ...(s.replaceToken !== undefined && { replaceToken: s.replaceToken }),
        });
        outcome = 'assigned';
        detail = result.assignedHub;
      } catch (error) {
        if (!(error instanceof SampleDeviceError) || error.code === 'interrupted') throw error;
        outcome = error.code;
        detail = error.dpsErrorCode !== undefined ? `DPS ${error.dpsErrorCode}` : error.message;
      }
      const decision = webhookLog.slice(seen).at(-1);
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
      rows.push(row);
      print(`${ok ? 'ok  ' : 'FAIL'} ${s.registrationId} over ${s.transport} (${s.title}): ${outcome}, ${detail}, webhook: ${webhookReason}`);
    }

    // The factory flow: refused while disabled, activated through the portal, admitted (demo/portal-step.ts).
    const portalStep = await runPortalStep({ work, keysDir, dps, idScope: ID_SCOPE, groupKey, webhookLog, print, ...(options.signal !== undefined && { signal: options.signal }) });

    const records = dps.registrations();
    print('');
    print(
      table(
        ['device', 'enrollment', 'via', 'token', 'expected', 'outcome', 'hub / DPS error', 'webhook decision', 'ms', 'result'],
        rows.map((r) => [r.registrationId, r.enrollment, r.transport, r.token, r.expected, r.outcome, r.detail, r.webhookReason, String(r.ms), r.ok ? 'ok' : 'FAIL']),
      ),
    );

    const assigned = records.find((r) => r.registrationId === 'sensor-0042' && r.status === 'assigned');
    if (assigned !== undefined) {
      print('');
      print(`sensor-0042 as DPS recorded it: hub ${assigned.assignedHub}, device id ${assigned.deviceId}, substatus ${assigned.substatus ?? '-'}`);
      print(`  initial twin: ${JSON.stringify(assigned.initialTwin ?? null)}`);
      print(`  payload returned to the device: ${JSON.stringify(assigned.payload ?? null)}`);
    }
    const ok = rows.length === scenarios.length && rows.every((r) => r.ok) && assigned !== undefined && portalStep.ok;
    print('');
    print(`${ok ? 'PASS' : 'FAIL'}: ${rows.filter((r) => r.ok).length}/${scenarios.length} devices ended as expected in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
    return { ok, rows, records };
  } finally {
    await dps?.close().catch(() => undefined);
    await host?.close().catch(() => undefined);
    await rm(work, { recursive: true, force: true });
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
