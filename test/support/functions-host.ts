/**
 * A stand-in for the Azure Functions host and its Node.js worker, to run what ships (package.json `main`, the
 * bundle) end to end: it answers `require('@azure/functions-core')` as the worker does (its setupCoreModule
 * intercepts Module.prototype.require), imports `main`, and drives each HTTP request through the programming model
 * the app registered: getInvocationModel -> getArguments -> invokeFunction -> getResponse, the calls the worker makes
 * for every invocation. With HTTP streams on (`app.setup({ enableHttpStream: true })`), the request goes to the
 * library's own HTTP proxy, as the host sends it there, and the answer comes back from it.
 *
 * In front of the function it refuses what the host refuses for an HTTP trigger (learn.microsoft.com, "Azure
 * Functions HTTP trigger": the default route prefix `api`, the route defaulting to the function name, `methods`, and
 * for `authLevel: 'function'` a function key as the `code` query parameter or the `x-functions-key` header): another
 * path is 404, another method 405, a missing or wrong key 401, and the function is not invoked.
 *
 * Run by Node with its types stripped (no build step): `node test/support/functions-host.ts <main>`, the app settings
 * in the environment and the function key in FUNCTIONS_HOST_KEY. Prints "functions host listening on <url>", then
 * every line the function logs (the webhook's decision lines), one per line. A line `mark <n>` on stdin is answered
 * with "functions host mark <n>" after them, so a test knows every earlier line has reached it (bundle-host.ts).
 */
import { randomUUID, timingSafeEqual, createHash } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Module from 'node:module';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

interface Binding {
  type: string;
  direction?: string;
  authLevel?: string;
  methods?: string[];
  route?: string;
}
interface Registered {
  metadata: { name: string; bindings: Record<string, Binding> };
  callback: (...args: unknown[]) => unknown;
}
interface InvocationModel {
  getArguments(): Promise<{ context: unknown; inputs: unknown[] }>;
  invokeFunction(context: unknown, inputs: unknown[], handler: Registered['callback']): Promise<unknown>;
  getResponse(context: unknown, result: unknown): Promise<{ returnValue?: { http?: RpcHttpResponse } }>;
}
interface ProgrammingModel {
  getInvocationModel(coreCtx: unknown): InvocationModel;
  getCapabilities(capabilities: Record<string, string>): Promise<Record<string, string>>;
}
interface RpcHttpResponse {
  statusCode?: string;
  headers?: Record<string, string>;
  body?: { bytes?: Uint8Array; string?: string };
}

const main = process.argv[2];
if (main === undefined) throw new TypeError('usage: node test/support/functions-host.ts <main module>');
const functionKey = process.env.FUNCTIONS_HOST_KEY;
const print = (line: string) => process.stdout.write(`${line}\n`);

let model: ProgrammingModel | undefined;
const registered: Registered[] = [];
const coreApi = {
  version: 'stand-in',
  hostVersion: 'stand-in',
  setProgrammingModel: (m: ProgrammingModel) => void (model = m),
  getProgrammingModel: () => model,
  registerFunction: (metadata: Registered['metadata'], callback: Registered['callback']) => {
    registered.push({ metadata, callback });
    return { dispose() {} };
  },
  registerHook: () => ({ dispose() {} }),
  // System lines (the library's own) go to stderr; the function's lines are handled per invocation.
  log: (level: string, category: string, message: string) => {
    if (category === 'system' && (level === 'error' || level === 'warning')) process.stderr.write(`functions host: ${message}\n`);
  },
};
const originalRequire = Module.prototype.require;
Module.prototype.require = function (this: NodeJS.Module, id: string) {
  return id === '@azure/functions-core' ? coreApi : originalRequire.call(this, id);
} as typeof Module.prototype.require;

await import(pathToFileURL(main).href);
if (model === undefined) throw new Error(`${main} registered no programming model (is @azure/functions in it?)`);
const trigger = registered.find((r) => Object.values(r.metadata.bindings).some((b) => b.type === 'httpTrigger'));
if (trigger === undefined) throw new Error(`${main} registered no HTTP trigger`);
const [bindingName, binding] = Object.entries(trigger.metadata.bindings).find(([, b]) => b.type === 'httpTrigger')!;
const route = `/api/${(binding.route ?? trigger.metadata.name).toLowerCase()}`;
const methods = (binding.methods ?? ['GET', 'POST']).map((m) => m.toUpperCase());
// As the worker does once at start: this also opens the library's HTTP proxy when streams are on.
const capabilities = await model.getCapabilities({});
const proxyUri = capabilities.HttpUri;

const digest = (s: string) => createHash('sha256').update(s).digest();
function keyAccepted(req: IncomingMessage, url: URL): boolean {
  if (binding.authLevel === 'anonymous' || functionKey === undefined) return true;
  const given = url.searchParams.get('code') ?? req.headers['x-functions-key'];
  return typeof given === 'string' && timingSafeEqual(digest(given), digest(functionKey));
}

function answer(res: ServerResponse, status: number, headers: Record<string, string> = {}, body: Uint8Array | string = '') {
  res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function invoke(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const invocationId = randomUUID();
  const coreCtx = {
    invocationId,
    metadata: trigger!.metadata,
    state: undefined,
    log: (_level: string, category: string, message: string) => {
      if (category === 'user') print(message);
    },
    request: {
      invocationId,
      triggerMetadata: {},
      inputData: [] as Array<{ name: string; data: unknown }>,
    },
  };
  if (proxyUri === undefined) {
    // Without streams the host reads the whole body and hands it over in the invocation message.
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : (v ?? '')]));
    coreCtx.request.inputData.push({
      name: bindingName,
      data: { http: { method: req.method, url: url.href, headers, query: Object.fromEntries(url.searchParams), params: {}, body: { bytes: Buffer.concat(chunks) } } },
    });
    const invocation = model!.getInvocationModel(coreCtx);
    const { context, inputs } = await invocation.getArguments();
    const result = await invocation.invokeFunction(context, inputs, trigger!.callback);
    const http = (await invocation.getResponse(context, result)).returnValue?.http ?? {};
    const body = http.body?.bytes ?? http.body?.string ?? '';
    return answer(res, Number(http.statusCode ?? 200), http.headers ?? {}, body);
  }
  // With streams the host forwards the request itself to the worker's proxy, tagged with the invocation id.
  coreCtx.request.inputData.push({ name: bindingName, data: { http: {} } });
  const forwarded = new Promise<void>((resolve, reject) => {
    const target = new URL(proxyUri);
    const upstream = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: url.pathname + url.search,
        headers: {
          ...req.headers,
          'x-ms-invocation-id': invocationId,
          // The host says where the request came in; the library rebuilds the request URL from these.
          'x-forwarded-host': url.host,
          'x-forwarded-proto': url.protocol.replace(':', ''),
        },
      },
      (proxied) => {
        res.writeHead(proxied.statusCode ?? 500, proxied.headers);
        proxied.pipe(res);
        proxied.once('end', resolve);
      },
    );
    upstream.once('error', reject);
    req.pipe(upstream);
  });
  const invocation = model!.getInvocationModel(coreCtx);
  const { context, inputs } = await invocation.getArguments();
  const result = await invocation.invokeFunction(context, inputs, trigger!.callback);
  await invocation.getResponse(context, result);
  await forwarded;
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
  if (url.pathname.toLowerCase() !== route) return answer(res, 404);
  if (!methods.includes(req.method ?? '')) return answer(res, 405);
  if (!keyAccepted(req, url)) {
    // The host's own line: the function is never invoked.
    print(JSON.stringify({ event: 'validatejwt', outcome: 'unauthorized', status: 401 }));
    return answer(res, 401);
  }
  invoke(req, res, url).catch((error: unknown) => {
    process.stderr.write(`functions host: the invocation failed: ${error instanceof Error ? error.stack : typeof error}\n`);
    if (!res.headersSent) answer(res, 500);
    else res.destroy();
  });
});
server.listen(0, '127.0.0.1', () => print(`functions host listening on http://127.0.0.1:${(server.address() as AddressInfo).port}${route}`));
process.once('SIGTERM', () => server.close(() => process.exit(0)));
createInterface({ input: process.stdin }).on('line', (line) => {
  const mark = /^mark (\d+)$/.exec(line)?.[1];
  if (mark !== undefined) print(`functions host mark ${mark}`);
});
