/**
 * bench/loopback-names.ts, preloaded as the bench preloads it into the host with telemetry: the names it is given
 * resolve to 127.0.0.1 through node:dns (callback, `all`, promises), and only those. No name here leaves loopback:
 * the pass-through cases are an IP literal and localhost, which resolve without a query.
 */
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const preload = pathToFileURL(join(resolve(import.meta.dirname, '..', '..'), 'dist', 'bench', 'loopback-names.js')).href;

const script = `
import dns from 'node:dns';
const one = (name, options) => new Promise((ok, fail) => dns.lookup(name, options ?? {}, (e, address, family) => (e ? fail(e) : ok({ address, family }))));
const cases = {
  mapped: () => one('Westeurope-5.in.applicationinsights.azure.com'),
  mappedAll: () => one('westeurope-5.in.applicationinsights.azure.com', { all: true }),
  mappedFamily: () => new Promise((ok) => dns.lookup('westeurope-5.in.applicationinsights.azure.com', 4, (e, a) => ok(a))),
  mappedPromise: () => dns.promises.lookup('westeurope-5.in.applicationinsights.azure.com'),
  literal: () => one('127.0.0.2'),
  literalPromise: () => dns.promises.lookup('127.0.0.3'),
  localhost: () => one('localhost', { family: 4 }),
};
const out = {};
for (const name of process.argv.slice(1)) out[name] = await cases[name]();
process.stdout.write(JSON.stringify(out));
`;

/** Runs the named cases of `script` in a child with the preload and BENCH_LOOPBACK_NAMES=names. */
function lookups(names: string | undefined, cases: string[]): Record<string, unknown> {
  const env = { ...process.env, BENCH_LOOPBACK_NAMES: names ?? '' };
  const args = [`--import=${preload}`, '--input-type=module', '-e', script, ...cases];
  const stdout = execFileSync(process.execPath, args, { env, encoding: 'utf8', timeout: 20_000 });
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe('bench/loopback-names.ts', () => {
  it('resolves each listed name to 127.0.0.1, whatever its case and however it is asked', () => {
    const out = lookups(' other.example.test , westeurope-5.in.applicationinsights.azure.com', ['mapped', 'mappedAll', 'mappedFamily', 'mappedPromise']);
    expect(out.mapped).toEqual({ address: '127.0.0.1', family: 4 });
    expect(out.mappedAll).toEqual({ address: [{ address: '127.0.0.1', family: 4 }] });
    expect(out.mappedFamily).toBe('127.0.0.1');
    expect(out.mappedPromise).toEqual({ address: '127.0.0.1', family: 4 });
  });

  it('leaves every other name to node:dns', () => {
    const out = lookups('westeurope-5.in.applicationinsights.azure.com', ['literal', 'literalPromise', 'localhost']);
    expect(out.literal).toEqual({ address: '127.0.0.2', family: 4 });
    expect(out.literalPromise).toEqual({ address: '127.0.0.3', family: 4 });
    expect(out.localhost).toEqual({ address: '127.0.0.1', family: 4 });
  });

  it('takes an empty list as no names, and lookups still work', () => {
    // With the list empty a listed name would go to the resolver: ask only for a literal, which never does.
    const out = lookups(undefined, ['literal']);
    expect(out.literal).toEqual({ address: '127.0.0.2', family: 4 });
  });
});
