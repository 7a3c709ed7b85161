/**
 * Helpers for the security suite (test/security): hand-made JWS (headers jose's SignJWT will not write), a leak
 * watch that collects every answer and log line and checks none carries a secret, a small HTTP client that can lie
 * about content-length or stream chunks, and an Azurite table service started on a loopback port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, sign as nodeSign, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportPKCS8, type CryptoKey } from 'jose';

// ---------------------------------------------------------------------------------------------------------------
// Hand-made JWS

export const b64u = (value: string | Uint8Array): string => Buffer.from(value).toString('base64url');
export const json64 = (value: unknown): string => b64u(JSON.stringify(value));

const HASH_OF: Record<string, string> = { ES256: 'sha256', ES384: 'sha384', ES512: 'sha512' };

/** A node KeyObject for a jose private CryptoKey (made extractable by test/support/devices.ts). */
export async function keyObject(privateKey: CryptoKey): Promise<KeyObject> {
  return createPrivateKey(await exportPKCS8(privateKey));
}

/**
 * Signs `header.payload` with an EC key exactly as given: any header (crit, b64, duplicate members), any payload
 * text (not JSON, not an object). `dsaEncoding: 'der'` makes the ASN.1 DER signature JWS forbids.
 */
export function signRaw(
  key: KeyObject,
  header: Record<string, unknown> | string,
  payload: unknown,
  options: { dsaEncoding?: 'ieee-p1363' | 'der'; alg?: string } = {},
): string {
  const alg = options.alg ?? (typeof header === 'string' ? 'ES256' : String(header.alg ?? 'ES256'));
  const h = typeof header === 'string' ? header : json64(header);
  const p = typeof payload === 'string' ? b64u(payload) : json64(payload);
  const signingInput = `${h}.${p}`;
  const signature = nodeSign(HASH_OF[alg] ?? 'sha256', Buffer.from(signingInput), { key, dsaEncoding: options.dsaEncoding ?? 'ieee-p1363' });
  return `${signingInput}.${b64u(signature)}`;
}

/** The three segments of a compact JWS. */
export function segments(token: string): [string, string, string] {
  const [h = '', p = '', s = ''] = token.split('.');
  return [h, p, s];
}

// ---------------------------------------------------------------------------------------------------------------
// Leak watch

/**
 * Collects everything the webhook says (answers, headers, log lines, error messages) and the secrets it must never
 * say (tokens and their segments, key material, function keys, SAS tokens, account keys). `assertClean` names the
 * first leak by labels only, never printing the secret itself.
 */
export class LeakWatch {
  private readonly secrets = new Map<string, string>();
  private readonly said: Array<{ where: string; text: string }> = [];
  private readonly patterns: Array<{ label: string; pattern: RegExp }> = [];

  /** A secret that must appear nowhere. Short values (< 12 characters) are refused: they would match by chance. */
  secret(label: string, value: string): void {
    if (value.length < 12) throw new TypeError(`leak watch: secret ${label} is too short to search for`);
    this.secrets.set(value, label);
  }

  /** A token: the whole of it, its payload segment and its signature segment. */
  token(label: string, token: string): void {
    const [, payload, signature] = segments(token);
    this.secret(label, token);
    if (payload.length >= 12) this.secret(`${label} payload segment`, payload);
    if (signature.length >= 12) this.secret(`${label} signature segment`, signature);
  }

  /** A PEM: the whole of it and each base64 line of its body. */
  pem(label: string, pem: string): void {
    this.secret(label, pem.trim());
    for (const line of pem.split(/\r?\n/)) if (!line.startsWith('-----') && line.trim().length >= 12) this.secret(`${label} line`, line.trim());
  }

  /** A shape of secret that must appear nowhere (e.g. a bearer token issued by a stand-in). */
  forbid(label: string, pattern: RegExp): void {
    this.patterns.push({ label, pattern });
  }

  /** Something the webhook said. */
  saw(where: string, said: unknown): void {
    this.said.push({ where, text: typeof said === 'string' ? said : JSON.stringify(said) ?? String(said) });
  }

  get count(): number {
    return this.said.length;
  }

  /** Every leak as "<secret label> in <where>"; empty when clean. Also flags any PEM armour or JWS-looking text. */
  leaks(): string[] {
    const found: string[] = [];
    for (const { where, text } of this.said) {
      for (const [value, label] of this.secrets) if (text.includes(value)) found.push(`${label} in ${where}`);
      if (/-----BEGIN/.test(text)) found.push(`PEM armour in ${where}`);
      if (/eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/.test(text)) found.push(`a JWS-looking string in ${where}`);
      if (/SharedAccessSignature|[?&]sig=|AccountKey=/i.test(text)) found.push(`SAS or account key text in ${where}`);
      for (const { label, pattern } of this.patterns) if (pattern.test(text)) found.push(`${label} in ${where}`);
    }
    return found;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

export interface HttpAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  /** The body parsed as JSON, or undefined. */
  readonly body: { code?: string; message?: string; [k: string]: unknown } | undefined;
}

function parse(text: string): HttpAnswer['body'] {
  try {
    return JSON.parse(text) as HttpAnswer['body'];
  } catch {
    return undefined;
  }
}

/**
 * POSTs to `url`. `body` as a string is sent with its true content-length unless `headers` says otherwise; as an
 * array of chunks it is sent with chunked transfer encoding. A server that answers early and closes (413) still
 * yields its answer.
 */
export function post(
  url: string,
  body: string | Buffer | readonly (string | Buffer)[],
  options: { headers?: Record<string, string>; method?: string; omitContentType?: boolean } = {},
): Promise<HttpAnswer> {
  const chunked = Array.isArray(body);
  const headers: Record<string, string> = {
    ...(!options.omitContentType && { 'content-type': 'application/json' }),
    ...(!chunked && { 'content-length': String(Buffer.byteLength(body as string | Buffer)) }),
    ...options.headers,
  };
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'POST', headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parse(text) });
      });
    });
    // The server may answer and close before the whole body is written (413): that is not a client failure.
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE' && error.code !== 'ECONNRESET') reject(error);
    });
    if (chunked) {
      (async () => {
        for (const chunk of body as readonly (string | Buffer)[]) {
          if (req.destroyed) return;
          if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
        }
        req.end();
      })().catch(() => undefined);
    } else {
      req.end(body);
    }
  });
}

/** Writes `raw` bytes to the server and returns the first response's status line and body, for requests no client sends. */
export function rawHttp(port: number, raw: string | Buffer, timeoutMs = 5_000): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const parts: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error('raw HTTP request timed out')), timeoutMs);
    socket.on('data', (c: Buffer) => {
      parts.push(c);
      const text = Buffer.concat(parts).toString('utf8');
      const head = /^HTTP\/1\.1 (\d{3})[^\r]*\r\n([\s\S]*?)\r\n\r\n/.exec(text);
      const length = head && /content-length: (\d+)/i.exec(head[2] ?? '');
      if (head && length && text.length >= head[0].length + Number(length[1])) {
        clearTimeout(timer);
        socket.destroy();
        resolve({ status: Number(head[1]), text: text.slice(head[0].length) });
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(parts).toString('utf8');
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (status) resolve({ status: Number(status[1]), text });
      else reject(new Error('connection closed without an answer'));
    });
    socket.write(raw);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Azurite (table service only), on loopback

export const AZURITE_ACCOUNT_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface Azurite {
  readonly port: number;
  readonly connectionString: string;
  /** The table endpoint of the emulator's account, path style: http(s)://127.0.0.1:<port>/devstoreaccount1 */
  readonly accountUrl: string;
  stop(): Promise<void>;
}

export interface AzuriteOptions {
  /** Serve HTTPS with this certificate (`--cert --key`); needed for OAuth, which Azurite refuses over http. */
  readonly https?: { readonly certPem: string; readonly keyPem: string };
  /** `--oauth basic`: accept a bearer token whose JWT aud/iss/nbf/exp fit (the signature is not checked). */
  readonly oauth?: 'basic';
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const AZURITE_TABLE_MAIN = join(dirname(fileURLToPath(import.meta.url)), '../../node_modules/azurite/dist/src/table/main.js');

/** Starts `azurite-table` in memory on a free loopback port (retrying if the port was taken meanwhile). */
export async function startAzuriteTable(options: AzuriteOptions = {}): Promise<Azurite> {
  const workdir = await mkdtemp(join(tmpdir(), 'azurite-table-'));
  const extra: string[] = [];
  if (options.https !== undefined) {
    await writeFile(join(workdir, 'cert.pem'), options.https.certPem);
    await writeFile(join(workdir, 'key.pem'), options.https.keyPem, { mode: 0o600 });
    extra.push('--cert', join(workdir, 'cert.pem'), '--key', join(workdir, 'key.pem'));
  }
  if (options.oauth !== undefined) extra.push('--oauth', options.oauth);
  const scheme = options.https !== undefined ? 'https' : 'http';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child: ChildProcess = spawn(
      process.execPath,
      [AZURITE_TABLE_MAIN, '--tableHost', '127.0.0.1', '--tablePort', String(port), '--inMemoryPersistence', '--skipApiVersionCheck', '--disableTelemetry', '--silent', ...extra],
      { cwd: workdir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    const started = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 15_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (/successfully listening|successfully started/i.test(output)) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!started) {
      child.kill();
      continue;
    }
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    return {
      port,
      connectionString:
        `DefaultEndpointsProtocol=${scheme};AccountName=devstoreaccount1;AccountKey=${AZURITE_ACCOUNT_KEY};` +
        `TableEndpoint=${scheme}://127.0.0.1:${port}/devstoreaccount1;`,
      accountUrl: `${scheme}://127.0.0.1:${port}/devstoreaccount1`,
      stop: async () => {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
        await rm(workdir, { recursive: true, force: true });
      },
    };
  }
  await rm(workdir, { recursive: true, force: true });
  throw new Error('azurite-table did not start');
}

export { guardLoopback } from './loopback-guard.js';
