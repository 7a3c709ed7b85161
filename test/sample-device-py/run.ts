/**
 * Runs the Python sample device (sample-device-py/cli.py, in the venv of python/requirements-sample-device-py.txt)
 * or its test harness as a child process, with keys in the environment only (never argv), and keeps everything it
 * printed for the secrets checks.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO } from '../e2e/fixture.js';
import { pythonEnvBin } from '../support/python.js';

export const CLI = join(REPO, 'sample-device-py', 'cli.py');
export const HARNESS = join(REPO, 'test', 'sample-device-py', 'harness.py');
export const NODE_CLI = join(REPO, 'dist', 'sample-device', 'cli.js');

export interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Milliseconds from spawn to exit. */
  readonly ms: number;
}

/** Everything every child printed, for the secrets checks. */
export const outputs: string[] = [];

export function python(): string {
  return join(pythonEnvBin('requirements-sample-device-py'), 'python');
}

/** Spawns `command args` with only PATH, LANG and `env`; `input` goes to stdin. */
export function runProcess(command: string, args: readonly string[], env: Record<string, string> = {}, input = ''): Promise<Run> {
  const started = performance.now();
  const child = spawn(command, args, {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  // A hang guard, not a speed goal: the SDK's own limits end every case well before.
  const killer = setTimeout(() => child.kill('SIGKILL'), 150_000);
  child.stdin.end(input);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      outputs.push(stdout, stderr);
      resolve({ code, stdout, stderr, ms: Math.round(performance.now() - started) });
    });
  });
}

/** The Python sample's CLI. */
export function runPy(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return runProcess(python(), [CLI, ...args], env);
}

/** The sample's CLI through the harness, with the token replaced (`tamper`, or `other` device's own token). */
export function runPyReplacingToken(mode: 'tamper' | 'other', other: { keyFile: string; id: string }, args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return runProcess(python(), [HARNESS, 'cli', mode, other.keyFile, other.id, '--', ...args], env);
}
