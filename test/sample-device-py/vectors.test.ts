/**
 * Cross-language vectors: from one key file and one fixed time, the Python sample (sample-device-py) and the Node
 * sample (sample-device) produce
 * - registration tokens with the same header and claims, byte for byte (`token --iat T --jti J`; the ES256
 *   signature is randomised in both, so the third segment differs), each verifying with the device's public key
 *   and each accepted by the real webhook through the local DPS;
 * - the same derived device key from a group key (and DPS's documented vector);
 * - SAS tokens, built by each official SDK's own code from that key at that time, that the local DPS's SAS check
 *   accepts, each byte-identical to its SDK's form written out here: the Node SDK signs `sr` as is and adds
 *   skn=registration before se; the Python SDK URL-encodes `sr`, signs the encoded form and sends no skn
 *   (dps-protocol §3). So the two SDKs' tokens differ from each other by design, and each is reproduced exactly.
 */
import { createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import common from 'azure-iot-common';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseSas, signSas, verifySas } from '../../dps-emulator/protocol/sas.js';
import { deriveDeviceKey } from '../../sample-device/jwt.js';
import { ensureBuilt, group, ID_SCOPE, individual, makeDevices, randomKey, startFlow, type Device, type Flow } from '../e2e/fixture.js';
import { HARNESS, NODE_CLI, python, runProcess, runPy } from './run.js';

const ID = 'vector-0001';
const MEMBER = 'vector-line-0002';
const symmetricKey = randomKey();
const groupKey = randomKey(64);
/** One fixed time for every vector: a little in the past, so no verifier sees an iat from the future. */
const T = Math.floor(Date.now() / 1000) - 5;
const JTI = 'vector-jti-0001';

let flow: Flow;
let device: Device;

beforeAll(async () => {
  await ensureBuilt();
  flow = await startFlow();
  device = (await makeDevices(flow.work, flow.keysDir, [ID])).get(ID)!;
  await flow.startDps({
    individualEnrollments: [individual(ID, symmetricKey, flow.webhookUrl())],
    enrollmentGroups: [group('vector-line', groupKey, flow.webhookUrl())],
  });
}, 15 * 60_000);

afterAll(async () => {
  await flow?.close();
});

const tokenArgs = (): string[] => ['token', '--private-key', device.privateKeyFile, '--registration-id', ID, '--id-scope', ID_SCOPE, '--host', 'localhost', '--lifetime', '600', '--iat', String(T), '--jti', JTI, '--kid=vector-kid'];

describe('registration tokens, one key file, one fixed time', () => {
  let pyToken: string;
  let nodeToken: string;

  beforeAll(async () => {
    const py = await runPy(tokenArgs());
    const node = await runProcess(process.execPath, [NODE_CLI, ...tokenArgs()]);
    expect(py.code, py.stderr).toBe(0);
    expect(node.code, node.stderr).toBe(0);
    pyToken = py.stdout.split('\n')[0]!;
    nodeToken = node.stdout.split('\n')[0]!;
  }, 120_000);

  test('header and claims are byte-identical; each signature verifies with the device\'s public key', async () => {
    const signingInput = (token: string) => token.split('.').slice(0, 2).join('.');
    expect(signingInput(pyToken)).toBe(signingInput(nodeToken));
    expect(decodeProtectedHeader(pyToken)).toEqual({ alg: 'ES256', typ: 'JWT', kid: 'vector-kid' });
    const publicKey = createPublicKey(await readFile(device.publicKeyFile, 'utf8'));
    for (const token of [pyToken, nodeToken]) {
      const { payload } = await compactVerify(token, publicKey);
      // The claims of docs/sample-device.md, in the Node sample's order.
      expect(new TextDecoder().decode(payload)).toBe(
        JSON.stringify({ registration_id: ID, id_scope: ID_SCOPE, provisioning_host: 'localhost', sub: ID, aud: ID_SCOPE, iat: T, exp: T + 600, jti: JTI }),
      );
    }
    expect(pyToken.split('.')[2]).toMatch(/^[A-Za-z0-9_-]{86}$/); // R || S, 64 bytes, not DER
  });

  test.each(['python', 'node'])('the webhook accepts the %s sample\'s token (sent through the local DPS)', async (sample) => {
    const token = sample === 'python' ? pyToken : nodeToken;
    const outcome = await flow.register({ registrationId: ID, privateKeyFile: device.privateKeyFile, symmetricKey, replaceToken: () => token });
    expect(outcome.error).toBeUndefined();
    expect(outcome.webhookReason).toBe('assigned');
    expect(outcome.result).toMatchObject({ status: 'assigned', deviceId: ID });
  }, 120_000);
});

interface PySas {
  deviceKey: string;
  sas: string;
}

async function pythonSas(input: Record<string, unknown>): Promise<PySas> {
  const run = await runProcess(python(), [HARNESS, 'sas'], {}, JSON.stringify({ idScope: ID_SCOPE, now: T, ...input }));
  expect(run.code, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as PySas;
}

/** What the Node SDK signs for DPS (azure-iot-security-symmetric-key: SharedAccessSignature.create, an hour ahead). */
function nodeSdkSas(registrationId: string, deviceKey: string): string {
  return common.SharedAccessSignature.create(`${ID_SCOPE}/registrations/${registrationId}`, 'registration', deviceKey, T + 3600).toString();
}

describe('SAS tokens, one key, one fixed time', () => {
  test('the group member\'s derived key is the same in both samples, and DPS\'s documented vector holds in Python', async () => {
    const py = await pythonSas({ registrationId: MEMBER, groupKey });
    expect(py.deviceKey).toBe(deriveDeviceKey(groupKey, MEMBER));
    const documented = await pythonSas({ registrationId: 'sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6', groupKey: '8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==' });
    expect(documented.deviceKey).toBe('Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=');
  }, 120_000);

  test.each([
    { title: 'an individual enrollment\'s key', id: ID, key: { symmetricKey } },
    { title: 'a key derived from the group key', id: MEMBER, key: { groupKey } },
  ])('with $title: both SDKs\' SAS tokens pass the local DPS\'s check, each byte-identical to its SDK\'s form', async ({ id, key }) => {
    const py = await pythonSas({ registrationId: id, ...key });
    const deviceKey = key.symmetricKey ?? deriveDeviceKey(groupKey, id);
    const nodeSas = nodeSdkSas(id, deviceKey);
    for (const sas of [py.sas, nodeSas]) {
      expect(verifySas({ sas: parseSas(sas), idScope: ID_SCOPE, registrationId: id, keys: [deviceKey], nowSeconds: T })).toBe(0);
    }
    // Each SDK's form, written out: Node (azure-iot-common SharedAccessSignature#toString) sr, sig, skn, se with sr
    // as is; Python (common/auth/sastoken.py _build_token) sr, sig, se with sr URL-encoded (quote, safe="").
    const raw = `${ID_SCOPE}/registrations/${id}`;
    const se = T + 3600;
    const sig = (sr: string) => encodeURIComponent(signSas(deviceKey, sr, se).toString('base64'));
    expect(nodeSas).toBe(`SharedAccessSignature sr=${raw}&sig=${sig(raw)}&skn=registration&se=${se}`);
    expect(py.sas).toBe(`SharedAccessSignature sr=${encodeURIComponent(raw)}&sig=${sig(encodeURIComponent(raw))}&se=${se}`);
    // The same inputs give the same bytes again: nothing random or clock-dependent beyond the fixed time.
    expect((await pythonSas({ registrationId: id, ...key })).sas).toBe(py.sas);
    // A wrong key fails the same check, so the acceptance above means something.
    expect(() => verifySas({ sas: parseSas(py.sas), idScope: ID_SCOPE, registrationId: id, keys: [randomKey()], nowSeconds: T })).toThrow(/signature does not match/);
  }, 120_000);
});
