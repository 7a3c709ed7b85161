import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { exitCodeFor, parseCli, runCli, UsageError } from '../../dps-emulator/cli.js';
import { generateLocalTls } from '../../dps-emulator/tls.js';

async function enrollmentsFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cli-'));
  const path = join(dir, 'enrollments.json');
  await writeFile(path, JSON.stringify({
    individualEnrollments: [{
      registrationId: 'dev-1',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: Buffer.alloc(32, 1).toString('base64') } },
      allocationPolicy: 'custom',
      customAllocationDefinition: { webhookUrl: 'http://localhost:7071/api/validatejwt', apiVersion: '2021-10-01' },
      iotHubs: ['hub.azure-devices.net'],
    }],
  }));
  return path;
}

const usage = async (argv: string[]): Promise<string> => {
  try {
    await parseCli(argv);
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect(exitCodeFor(err)).toBe(2);
    return (err as Error).message;
  }
  throw new Error('accepted');
};

describe('cli', () => {
  it('maps flags to options, with DPS defaults', async () => {
    const path = await enrollmentsFile();
    const parsed = await parseCli(['--enrollments', path, '--port', '9443', '--webhook-attempts', '3', '--webhook-first-delay-ms', '10']);
    expect(parsed.help).toBe(false);
    if (parsed.help) return;
    expect(parsed.options).toMatchObject({ httpsPort: 9443, mqttPort: 8883, hubPort: 8884, maxRegistrations: 10_000, host: '127.0.0.1', idScope: '0ne00000000', webhookRetry: { attempts: 3, firstDelayMs: 10, incrementMs: 9000 } });
    // MQTT over WebSockets is off unless asked for.
    expect(parsed.options).not.toHaveProperty('wsPort');
    expect(parsed.options).not.toHaveProperty('hubWsPort');
  });

  it('--ws-port and --hub-ws-port turn MQTT over WebSockets on for the DPS and the hub', async () => {
    const parsed = await parseCli(['--enrollments', await enrollmentsFile(), '--ws-port', '443', '--hub-listen', '::1', '--hub-ws-port', '0']);
    if (parsed.help) throw new Error('help');
    expect(parsed.options).toMatchObject({ wsPort: 443, hubWsPort: 0, hubListenHost: '::1' });
    expect(await usage(['--enrollments', 'x', '--ws-port', 'wss'])).toBe('--ws-port must be an integer from 0 to 65535, got "wss"');
    expect(await usage(['--enrollments', 'x', '--hub-ws-port', '70000'])).toBe('--hub-ws-port must be an integer from 0 to 65535, got "70000"');
  });

  it('refuses bad usage with exit code 2 and a message naming the flag', async () => {
    expect(await usage([])).toBe('--enrollments <file> is required');
    expect(await usage(['--enrollments', 'x', '--port', 'http'])).toBe('--port must be an integer from 0 to 65535, got "http"');
    expect(await usage(['--enrollments', 'x', '--cert', 'c.pem'])).toMatch(/--cert, --key and --ca go together/);
    expect(await usage(['--nope'])).toMatch(/Unknown option '--nope'/);
    // A fractional retry-after hangs the Python SDK's register (it parses the MQTT parameter with int()).
    expect(await usage(['--enrollments', 'x', '--retry-after', '0.5'])).toBe('--retry-after must be an integer from 1 to 3600, got "0.5"');
  });

  it('a bad enrollments file is exit code 1', async () => {
    const err = await parseCli(['--enrollments', '/nonexistent/enrollments.json']).catch((e: unknown) => e);
    expect(exitCodeFor(err)).toBe(1);
  });

  it('starts, prints the hosts and the CA file, and closes', async () => {
    const out: string[] = [];
    const dps = await runCli(['--enrollments', await enrollmentsFile(), '--port', '0', '--mqtt-port', '0', '--hub-port', '0'], { out: (l) => out.push(l), err: () => {} });
    try {
      expect(out.join('\n')).toContain(`CA certificate    ${dps!.caFile}`);
      expect(out.join('\n')).toContain(`mqtts://${dps!.mqttHost}`);
      expect(out.join('\n')).toContain(`local IoT Hub     mqtts://${dps!.hub.host}  for hub.azure-devices.net`);
      expect(out.join('\n')).not.toContain('wss://');
    } finally {
      await dps!.close();
    }
  });

  it('with --ws-port 0 and --hub-ws-port 0, prints both wss URLs', async () => {
    const out: string[] = [];
    const argv = ['--enrollments', await enrollmentsFile(), '--port', '0', '--mqtt-port', '0', '--hub-port', '0', '--ws-port', '0', '--hub-ws-port', '0'];
    const dps = await runCli(argv, { out: (l) => out.push(l), err: () => {} });
    try {
      expect(dps!.websocket!.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+\/\$iothub\/websocket$/);
      expect(dps!.hub.websocket!.port).not.toBe(dps!.websocket!.port);
      expect(out.join('\n')).toContain(`MQTT/WebSockets   ${dps!.websocket!.url}`);
      expect(out.join('\n')).toContain(`hub WebSockets    ${dps!.hub.websocket!.url}`);
    } finally {
      await dps!.close();
    }
  });
});

describe('generated TLS', () => {
  it('serves a certificate the generated CA vouches for, for localhost and 127.0.0.1', async () => {
    const tls = await generateLocalTls();
    const { createServer } = await import('node:tls');
    const server = createServer({ cert: tls.cert, key: tls.key }, (s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      for (const host of ['localhost', '127.0.0.1']) {
        const authorized = await new Promise<boolean>((resolve, reject) => {
          const s = connect({ host, port, ca: tls.ca, servername: host === 'localhost' ? host : undefined }, () => {
            resolve(s.authorized);
            s.end();
          });
          s.on('error', reject);
        });
        expect(authorized).toBe(true);
      }
      // And it is not trusted without the CA.
      await expect(new Promise((resolve, reject) => connect({ host: 'localhost', port }, () => resolve(undefined)).on('error', reject))).rejects.toThrow(/self-signed|unable to verify|self signed/);
    } finally {
      server.close();
    }
  });
});
