/**
 * Runs scripts/*.sh for real (bash) with stand-ins for az, npm, func and zip first on PATH (fixtures/fake-cli.mjs).
 * openssl is the real one. Each sandbox has its own temp dir, state file and call log.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
const FAKE = join(import.meta.dirname, 'fixtures/fake-cli.mjs');

/** The secrets the stand-in hands out; none may ever appear in a script's output. */
export const FUNCTION_KEY = 'FnKey0123456789SECRETfunctionKEYabcdefABCDEF==';
export const STORAGE_KEY = 'STORAGEsecretKEY0123456789==';

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
  /** Every command the stand-ins received during this run: [tool, ...argv]. */
  calls: string[][];
}

export interface Sandbox {
  dir: string;
  run(script: string, args: string[], options?: { env?: Record<string, string>; cwd?: string }): RunResult;
  state(): any;
  setState(mutate: (state: any) => void): void;
  cleanup(): void;
}

export function sandbox(options: { tools?: string[] } = {}): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), 'dps-scripts-'));
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  for (const tool of options.tools ?? ['az', 'npm', 'zip']) {
    const file = join(bin, tool);
    writeFileSync(file, `#!/usr/bin/env bash\nexec node ${JSON.stringify(FAKE)} ${tool} "$@"\n`);
    chmodSync(file, 0o755);
  }
  const log = join(dir, 'calls.jsonl');
  const stateFile = join(dir, 'state.json');
  writeFileSync(log, '');
  // The system PATH minus anything that could be a real az/func: the stand-ins come first anyway.
  const env = {
    PATH: `${bin}:/usr/local/bin:/usr/bin:/bin:${process.env.PATH ?? ''}`,
    HOME: dir,
    LANG: 'C.UTF-8',
    TMPDIR: dir,
    FAKE_AZ_LOG: log,
    FAKE_AZ_STATE: stateFile,
  };
  let seen = 0;
  return {
    dir,
    run(script, args, runOptions = {}) {
      const result = spawnSync('bash', [join(ROOT, 'scripts', script), ...args], {
        cwd: runOptions.cwd ?? dir,
        env: { ...env, ...runOptions.env },
        encoding: 'utf8',
        timeout: 20_000,
      });
      const lines = readFileSync(log, 'utf8').split('\n').filter((l) => l !== '');
      const calls = lines.slice(seen).map((l) => JSON.parse(l) as string[]);
      seen = lines.length;
      return { status: result.status, stdout: result.stdout, stderr: result.stderr, calls };
    },
    state: () => (existsSync(stateFile) ? JSON.parse(readFileSync(stateFile, 'utf8')) : {}),
    setState(mutate) {
      const state = existsSync(stateFile) ? JSON.parse(readFileSync(stateFile, 'utf8')) : {};
      mutate(state);
      writeFileSync(stateFile, JSON.stringify(state, null, 2));
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** az calls only, as command lines without the leading "az". */
export function azLines(calls: string[][]): string[] {
  return calls.filter((c) => c[0] === 'az').map((c) => c.slice(1).join(' '));
}

/** A call mutates Azure when it creates, sets, assigns, deletes, tags or deploys. */
export function isWrite(call: string[]): boolean {
  if (call[0] !== 'az') return false;
  const words = call.slice(1).filter((w) => !w.startsWith('-'));
  return words.some((w) => ['create', 'set', 'set-attributes', 'assign', 'delete', 'purge', 'tag', 'config-zip', 'update', 'add'].includes(w));
}

/** Throws when any line of the output holds one of the secrets. */
export function assertNoSecrets(result: RunResult, secrets: string[]): void {
  for (const secret of secrets) {
    if (secret === '') continue;
    for (const [stream, text] of [['stdout', result.stdout], ['stderr', result.stderr]] as const) {
      text.split('\n').forEach((line, index) => {
        if (line.includes(secret)) throw new Error(`${stream} line ${index + 1} shows a secret: ${line}`);
      });
    }
  }
}
