/**
 * The shipped bundle (package.json `main`) served by the Functions host stand-in (functions-host.ts) in a child
 * process: its own environment as app settings, the function key the host checks, every line it logs handed to
 * `log`. What the end-to-end tests talk to, so they exercise what deploys.
 *
 * The lines come over a pipe, so an answer can reach the test before the line the function logged ahead of it:
 * `settled()` waits until every line logged so far has been handed to `log`, instead of for a time.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '..', '..');

export interface BundledFunction {
  readonly url: string;
  /** Resolves once every line the function logged before this call has been handed to `log`. */
  settled(): Promise<void>;
  close(): Promise<void>;
}

export async function startBundledFunction(options: {
  env: Record<string, string>;
  functionKey?: string;
  log: (line: string) => void;
}): Promise<BundledFunction> {
  const main = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { main: string }).main;
  if (!existsSync(join(REPO, main))) throw new Error(`${main} (package.json main) is missing: run \`npm run build\` first (npm test does)`);
  // Node strips the stand-in's types itself: by default since 22.18 and in 24, behind this flag from 22.6.
  const child = spawn(process.execPath, ['--experimental-strip-types', join(REPO, 'test', 'support', 'functions-host.ts'), join(REPO, main)], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '', ...options.env, ...(options.functionKey !== undefined && { FUNCTIONS_HOST_KEY: options.functionKey }) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  // The stand-in echoes each mark it reads on stdin after every line it wrote before it: the pipe keeps the order.
  const marks = new Map<number, { done: () => void; fail: (e: Error) => void }>();
  let nextMark = 0;
  child.once('exit', (code) => {
    for (const { fail } of marks.values()) fail(new Error(`the Functions host stand-in exited (${code}) before its log settled`));
    marks.clear();
  });
  const url = await new Promise<string>((found, fail) => {
    let pending = '';
    let listening: string | undefined;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        const mark = /^functions host mark (\d+)$/.exec(line)?.[1];
        if (mark !== undefined) {
          marks.get(Number(mark))?.done();
          marks.delete(Number(mark));
        } else if (listening === undefined) {
          listening = /^functions host listening on (\S+)$/.exec(line)?.[1];
          if (listening !== undefined) found(listening);
        } else options.log(line);
      }
    });
    child.once('exit', (code) => fail(new Error(`the Functions host stand-in exited (${code}) before listening; see its output above`)));
  });
  return {
    url,
    settled: () =>
      new Promise<void>((done, fail) => {
        if (child.exitCode !== null) return fail(new Error(`the Functions host stand-in has exited (${child.exitCode})`));
        const mark = nextMark++;
        marks.set(mark, { done, fail });
        child.stdin.write(`mark ${mark}\n`);
      }),
    close: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((done) => setTimeout(done, 5_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}
