/**
 * Vitest globalSetup: makes one throwaway test CA per run and has every test worker trust it, so the real Azure SDK
 * can talk HTTPS to the local stand-ins without any test-only trust path in product code and without turning
 * certificate checks off.
 *
 * NODE_EXTRA_CA_CERTS is read only when a Node process starts; globalSetup runs in the main vitest process before the
 * workers (forks) are spawned, and they inherit its environment. TEST_CA_CERT_FILE / TEST_CA_KEY_FILE let the
 * stand-ins (see keyvault-standin.ts `processTrustedCa`) sign their server certificates with the same CA.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestCa } from './keyvault-standin.js';

export default async function setup(): Promise<() => void> {
  const ca = await createTestCa();
  const dir = mkdtempSync(join(tmpdir(), 'dps-webhook-test-ca-'));
  const certFile = join(dir, 'ca.pem');
  const keyFile = join(dir, 'ca-key.pem');
  const bundleFile = join(dir, 'extra-ca-bundle.pem');
  writeFileSync(certFile, ca.certPem);
  writeFileSync(keyFile, ca.keyPem, { mode: 0o600 });
  // Keep any CA the developer already relies on (a corporate proxy, say) alongside ours.
  const previous = process.env.NODE_EXTRA_CA_CERTS;
  const inherited = previous !== undefined ? safeRead(previous) : '';
  writeFileSync(bundleFile, `${inherited.trimEnd()}\n${ca.certPem}`.trimStart());

  const saved = { NODE_EXTRA_CA_CERTS: previous, TEST_CA_CERT_FILE: process.env.TEST_CA_CERT_FILE, TEST_CA_KEY_FILE: process.env.TEST_CA_KEY_FILE };
  process.env.NODE_EXTRA_CA_CERTS = bundleFile;
  process.env.TEST_CA_CERT_FILE = certFile;
  process.env.TEST_CA_KEY_FILE = keyFile;

  return () => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    rmSync(dir, { recursive: true, force: true });
  };
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
