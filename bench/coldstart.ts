/**
 * Section 7's child, run by run.ts once per start: a fresh process imports the trigger (the bundle, or the tsc output
 * with node_modules beside it, as deployed before the bundle) and admits one device through the Key Vault path (real
 * SDK, the loopback stand-ins), as the first request after a cold start does. Prints the times since the process
 * started (performance.timeOrigin is the process's start).
 *
 * Usage: node dist/bench/coldstart.js <trigger module> <body.json>   (settings in the environment, as app settings)
 */
import { readFileSync } from 'node:fs';
import Module from 'node:module';
import { pathToFileURL } from 'node:url';
// The guard first, and nothing else of ours: whatever this imports is loaded before the trigger and skews the figure.
import { guardLoopback } from '../test/support/loopback-guard.js';

const guard = guardLoopback();
const [triggerModule, bodyFile] = process.argv.slice(2);
if (triggerModule === undefined || bodyFile === undefined || !/^http:\/\/(127\.0\.0\.1|localhost)[:/]/.test(process.env.IDENTITY_ENDPOINT ?? '')) {
  throw new TypeError('coldstart.js is started by run.ts, with IDENTITY_ENDPOINT on loopback, a trigger module and a body file');
}
const body = readFileSync(bodyFile, 'utf8');

// As the Functions worker does before it loads `main`: answer require('@azure/functions-core') (the worker's
// setupCoreModule), so the library registers the trigger as in Azure rather than warning about a missing runtime.
const core = {
  version: 'bench',
  hostVersion: 'bench',
  setProgrammingModel() {},
  registerFunction: () => ({ dispose() {} }),
  registerHook: () => ({ dispose() {} }),
  log() {},
};
const originalRequire = Module.prototype.require;
Module.prototype.require = function (this: NodeJS.Module, id: string) {
  return id === '@azure/functions-core' ? core : originalRequire.call(this, id);
} as typeof Module.prototype.require;

interface Response {
  status?: number;
}
type Handler = (request: Request, context: unknown) => Promise<Response>;

const started = performance.now();
const { validateJwt } = (await import(pathToFileURL(triggerModule).href)) as { validateJwt: Handler };
const imported = performance.now();
const lines: string[] = [];
const context = { log: (l: string) => lines.push(l), warn: (l: string) => lines.push(l), error: (l: string) => lines.push(l) };
// What the host hands the handler: a fetch Request (the library's HttpRequest wraps one), body as a stream.
const request = new Request('http://localhost:7071/api/validatejwt', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
const response = await validateJwt(request, context);
const admitted = performance.now();
const cpu = process.cpuUsage();

process.stdout.write(
  `${JSON.stringify({
    status: response.status ?? 200,
    code: lines.length === 1 ? (JSON.parse(lines[0]!) as { code?: string }).code : undefined,
    sinceStartMs: admitted,
    // CPU time of the whole process (every thread) until then: steadier than wall time on a busy machine.
    cpuMs: (cpu.user + cpu.system) / 1000,
    bootMs: started,
    importMs: imported - started,
    firstAdmissionMs: admitted - imported,
    blockedConnections: guard.blocked.length,
  })}\n`,
);
// The SDK's sockets would keep the process up for their keep-alive time.
process.exit(0);
