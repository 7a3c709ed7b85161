/** Runs the C binary as a child process and collects what a user would see: exit code, stdout, stderr. */
import { spawn } from 'node:child_process';

export interface RunOutcome {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Run the binary under this command (e.g. valgrind and its flags). */
  readonly prefix?: readonly string[];
  /** Called with all stdout so far, each time more arrives. */
  readonly onStdout?: (soFar: string) => void;
  /** Sends SIGINT once stdout contains this text (a user's Ctrl-C at that point). */
  readonly interruptWhen?: string;
}

export function runBinary(file: string, args: readonly string[], env: Readonly<Record<string, string>> = {}, options: RunOptions = {}): Promise<RunOutcome> {
  const prefix = options.prefix ?? [];
  return new Promise((resolve, reject) => {
    const [cmd, ...pre] = prefix.length > 0 ? prefix : [file];
    const child = spawn(cmd!, prefix.length > 0 ? [...pre, file, ...args] : [...args], {
      // Only what the program needs: no inherited DEVICE_* keys from the developer's shell.
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
      options.onStdout?.(stdout);
      if (options.interruptWhen !== undefined && !interrupted && stdout.includes(options.interruptWhen)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
