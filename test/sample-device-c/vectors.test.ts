/**
 * Cross-language vectors: from one key file and one fixed time, the C sample (its test-only vectors tool, which
 * links the same code as the program) and the Node sample compute the same credentials. The SAS tokens for DPS and
 * for the hub are byte-identical and verify as the local DPS and hub verify them; the group key derivation gives
 * dps-protocol.md's vector; both ES256 tokens carry the same header and claims (byte for byte with `token --jti --iat`;
 * ECDSA signatures differ by design) and the
 * real webhook, through the local DPS, assigns a device presenting either, each sent by the other sample's client.
 * Key files: what `sample-device keygen` writes, what scripts/keygen.sh writes, a SEC1 key from `openssl ecparam`
 * (the Python sample's devices), and the C sample's own `keygen`.
 */
import { execFile } from 'node:child_process';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import common from 'azure-iot-common';
import { calculateJwkThumbprint, exportJWK, importSPKI, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseSas, signSas, verifySas } from '../../dps-emulator/protocol/sas.js';
import { keygen } from '../../sample-device/commands/keygen.js';
import { deriveDeviceKey, importDevicePrivateKey, privateKeyThumbprint, signDeviceToken } from '../../sample-device/jwt.js';
import { HUBS, ID_SCOPE, individual, randomKey, startFlow, type Flow } from '../e2e/fixture.js';
import { buildCSample, type CBuild } from './build.js';
import { runBinary } from './exec.js';

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, '../..');
const key = randomKey();
let flow: Flow;
let build: CBuild;

interface KeySource {
  readonly id: string;
  readonly privateKeyFile: string;
  readonly publicKeyFile: string;
}
const sources = new Map<string, KeySource>();

beforeAll(async () => {
  build = await buildCSample();
  flow = await startFlow();
  const dir = join(flow.work, 'vector-keys');
  // sample-device keygen (jose, PKCS#8).
  const node = await keygen({ outDir: dir, name: 'vec-node' });
  sources.set('sample-device keygen', { id: 'vec-node', privateKeyFile: node.privateKeyFile, publicKeyFile: node.publicKeyFile });
  // scripts/keygen.sh (openssl, PKCS#8).
  await run('bash', [join(REPO, 'scripts/keygen.sh'), '--registration-id', 'vec-script'], { cwd: dir });
  sources.set('scripts/keygen.sh', { id: 'vec-script', privateKeyFile: join(dir, 'vec-script.key.pem'), publicKeyFile: join(dir, 'vec-script.pub.pem') });
  // SEC1, as `openssl ecparam -genkey` writes for the Python sample's devices.
  const sec1 = join(dir, 'vec-sec1.key.pem');
  const { stdout: sec1Pem } = await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout']);
  await writeFile(sec1, sec1Pem, { mode: 0o600 });
  await run('openssl', ['pkey', '-in', sec1, '-pubout', '-out', join(dir, 'vec-sec1.pub.pem')]);
  sources.set('openssl ecparam (SEC1)', { id: 'vec-sec1', privateKeyFile: sec1, publicKeyFile: join(dir, 'vec-sec1.pub.pem') });
  // The C sample's own keygen.
  const c = await runBinary(build.bin, ['keygen', '--out-dir', dir, '--name', 'vec-c']);
  expect(c.code, c.stderr).toBe(0);
  sources.set('sample-device-c keygen', { id: 'vec-c', privateKeyFile: join(dir, 'vec-c.key.pem'), publicKeyFile: join(dir, 'vec-c.pub.pem') });
  for (const s of sources.values()) await copyFile(s.publicKeyFile, join(flow.keysDir, `${s.id}.pem`));
  await flow.startDps({ individualEnrollments: [...sources.values()].map((s) => individual(s.id, key, flow.webhookUrl())) });
});

afterAll(async () => {
  await flow?.close();
});

interface CVectors {
  jwt: string;
  dpsSas: string;
  hubSas: string;
  deviceKey: string;
  thumbprint: string;
}

async function cVectors(args: string[]): Promise<CVectors> {
  const out = await runBinary(build.vectors, args);
  expect(out.code, out.stderr).toBe(0);
  return JSON.parse(out.stdout) as CVectors;
}

test("the group key derivation gives dps-protocol.md's vector, as the Node sample's does", async () => {
  const groupKey = '8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==';
  const id = 'sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6';
  const v = await cVectors(['--private-key', sources.get('sample-device keygen')!.privateKeyFile, '--registration-id', id, '--id-scope', ID_SCOPE, '--now', '1800000000', '--se', '1800003600', '--hub', HUBS[0]!, '--group-key', groupKey]);
  expect(v.deviceKey).toBe('Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=');
  expect(v.deviceKey).toBe(deriveDeviceKey(groupKey, id));
});

describe.each(['sample-device keygen', 'scripts/keygen.sh', 'openssl ecparam (SEC1)', 'sample-device-c keygen'])('a key from %s', (source) => {
  test('byte-identical SAS tokens the local DPS and hub accept; equal claims; the webhook assigns either sample\'s token', async () => {
    const s = sources.get(source)!;
    const dps = flow.dps!;
    const now = Math.floor(Date.now() / 1000) - 5;
    const se = now + 3600;
    const v = await cVectors(['--private-key', s.privateKeyFile, '--registration-id', s.id, '--id-scope', ID_SCOPE, '--host', dps.mqttHost, '--now', String(now), '--se', String(se), '--hub', HUBS[0]!, '--symmetric-key', key]);

    // SAS for DPS: what the Node sample's SDK (azure-iot-security-symmetric-key) builds, byte for byte.
    const nodeDpsSas = common.SharedAccessSignature.create(`${ID_SCOPE}/registrations/${s.id}`, 'registration', key, se).toString();
    expect(v.dpsSas).toBe(nodeDpsSas);
    expect(verifySas({ sas: parseSas(v.dpsSas), idScope: ID_SCOPE, registrationId: s.id, keys: [key], nowSeconds: now })).toBe(0);
    expect(() => verifySas({ sas: parseSas(v.dpsSas), idScope: ID_SCOPE, registrationId: s.id, keys: [randomKey()], nowSeconds: now })).toThrow(/signature/);
    // SAS for the hub: what azure-iot-device's SharedAccessKeyAuthenticationProvider builds (encoded resource, no skn).
    const nodeHubSas = common.SharedAccessSignature.create(common.encodeUriComponentStrict(`${HUBS[0]}/devices/${s.id}`), undefined as unknown as string, key, se).toString();
    expect(v.hubSas).toBe(nodeHubSas);
    const hubSas = parseSas(v.hubSas);
    expect(hubSas.resource).toBe(`${HUBS[0]}/devices/${s.id}`.toLowerCase());
    expect(hubSas.skn).toBeUndefined();
    expect(signSas(key, hubSas.srRaw, hubSas.se).equals(hubSas.sig)).toBe(true);

    // The same key, seen by both: thumbprints agree; both tokens verify with the public key file and carry equal claims.
    const privateKey = await importDevicePrivateKey(await readFile(s.privateKeyFile, 'utf8'));
    expect(v.thumbprint).toBe(await privateKeyThumbprint(privateKey));
    const publicKey = await importSPKI(await readFile(s.publicKeyFile, 'utf8'), 'ES256');
    expect(v.thumbprint).toBe(await calculateJwkThumbprint(await exportJWK(publicKey), 'sha256'));
    const nodeJwt = await signDeviceToken({ privateKey, registrationId: s.id, idScope: ID_SCOPE, provisioningHost: dps.mqttHost, now });
    const c = await jwtVerify(v.jwt, publicKey, { algorithms: ['ES256'], currentDate: new Date(now * 1000) });
    const n = await jwtVerify(nodeJwt, publicKey, { algorithms: ['ES256'], currentDate: new Date(now * 1000) });
    expect(c.protectedHeader).toEqual(n.protectedHeader);
    const { jti: cJti, ...cClaims } = c.payload;
    const { jti: nJti, ...nClaims } = n.payload;
    expect(cClaims).toEqual(nClaims);
    expect(Object.keys(c.payload)).toEqual(Object.keys(n.payload));
    expect(cJti).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(cJti).not.toBe(nJti);
    // With the Node token's jti and the same iat (`token --jti --iat`), the C program signs a byte-identical header and claims.
    const fixed = await runBinary(build.bin, ['token', '--private-key', s.privateKeyFile, '--registration-id', s.id, '--id-scope', ID_SCOPE, '--host', dps.mqttHost, '--iat', String(now), '--jti', String(nJti)]);
    expect(fixed.code, fixed.stderr).toBe(0);
    const fixedToken = fixed.stdout.split('\n')[0]!;
    expect(fixedToken.split('.').slice(0, 2)).toEqual(nodeJwt.split('.').slice(0, 2));
    await jwtVerify(fixedToken, publicKey, { algorithms: ['ES256'], currentDate: new Date(now * 1000) });

    // The webhook (through the local DPS) assigns the C token sent by the Node sample's SDK...
    const viaNode = await flow.register({ registrationId: s.id, privateKeyFile: s.privateKeyFile, symmetricKey: key, transport: 'mqtt', replaceToken: () => v.jwt });
    expect(viaNode.error).toBeUndefined();
    expect(viaNode.webhookReason).toBe('assigned');
    // ...and the Node token sent by the C sample's DPS client.
    const tokenFile = join(flow.work, `${s.id}.jwt`);
    await writeFile(tokenFile, nodeJwt, { mode: 0o600 });
    const seen = (await flow.webhookLog()).length;
    const viaC = await runBinary(build.vectors, ['register', '--token-file', tokenFile, '--registration-id', s.id, '--id-scope', ID_SCOPE, '--host', dps.mqttHost, '--ca', dps.caFile, '--symmetric-key', key]);
    expect(viaC.code, viaC.stderr).toBe(0);
    expect(JSON.parse(viaC.stdout)).toMatchObject({ status: 'assigned', deviceId: s.id });
    expect((await flow.webhookLog()).slice(seen).at(-1)?.code).toBe('assigned');
  });
});
