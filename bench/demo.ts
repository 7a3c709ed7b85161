/**
 * The demo's duration, measured here rather than asserted by test/e2e/demo.test.ts: `npm run demo` (the built
 * dist/demo/run.js) started as a user starts it, `runs` times in a row, timed from spawn to exit. The test checks what
 * the demo shows; this says how long a user waits for it (target: at most DEMO_TARGET_SECONDS).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { round } from './lib.js';

export const DEMO_TARGET_SECONDS = 20;

export interface DemoResult {
  runs: number;
  /** Wall time of each run, in seconds, in run order. */
  seconds: number[];
  medianSeconds: number;
  worstSeconds: number;
  /** Every run exited 0 and printed its PASS line. */
  allPassed: boolean;
}

function runOnce(repoRoot: string, timeoutMs: number): Promise<{ seconds: number; passed: boolean }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [join(repoRoot, 'dist/demo/run.js')], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => (clearTimeout(timer), reject(error)));
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ seconds: (performance.now() - started) / 1000, passed: code === 0 && /^PASS: /m.test(out) });
    });
  });
}

export async function demoDuration(repoRoot: string, runs: number): Promise<DemoResult> {
  const seconds: number[] = [];
  let allPassed = true;
  for (let i = 0; i < runs; i++) {
    const run = await runOnce(repoRoot, 120_000);
    seconds.push(round(run.seconds, 2));
    allPassed &&= run.passed;
  }
  const sorted = [...seconds].sort((a, b) => a - b);
  return { runs, seconds, medianSeconds: sorted[Math.floor(sorted.length / 2)] ?? 0, worstSeconds: sorted.at(-1) ?? 0, allPassed };
}
