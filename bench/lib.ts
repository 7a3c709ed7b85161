import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Percentile of an unsorted sample (nearest rank), in the sample's unit. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

/** A growable list of float samples (latencies), cheap to append to under load. */
export class Samples {
  private data = new Float64Array(1 << 16);
  private n = 0;
  push(value: number): void {
    if (this.n === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.n++] = value;
  }
  get length(): number {
    return this.n;
  }
  sorted(): Float64Array {
    return this.data.slice(0, this.n).sort();
  }
}

/** A figure as the bench's table prints it: thousands grouped, exactly `digits` decimals. */
export const formatNumber = (value: number, digits = 0): string =>
  value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

export const round = (value: number, digits = 0): number => {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
};

/**
 * Runs `node <args>` as a child and returns the JSON object it prints as its last stdout line. The child's stderr is
 * passed through. Rejects on a non-zero exit or after `timeoutMs` (the child is killed: every run is bounded).
 * With `cgroup` (a MemoryGroup's directory) the child runs in that cgroup from its first instruction: a shell puts
 * itself in, then becomes node.
 */
export function runNodeChild<T>(args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number, cgroup?: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const [command, argv] =
      cgroup === undefined ? [process.execPath, args] : ['/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, process.execPath, ...args]];
    const child = spawn(command, argv, { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${args.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`${args.join(' ')} exited with ${code ?? signal}`));
      const last = out.trim().split('\n').at(-1) ?? '';
      try {
        resolve(JSON.parse(last) as T);
      } catch {
        reject(new Error(`${args.join(' ')} printed no JSON result`));
      }
    });
  });
}

/** The environment a child gets: a PATH and nothing else of ours, so no Azure or key setting leaks in from the shell. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', ...extra };
}

/** A memory cgroup of its own, for a child that must see a machine of `limitMB` (as a container's limit shows it). */
export interface MemoryGroup {
  readonly dir: string;
  readonly limitMB: number;
  /** Removes the group; its processes must have exited. */
  remove(): void;
}

/**
 * A child cgroup of this process's own with a memory limit, or the reason there can be none here (not Linux, no
 * memory controller, not allowed to make one). Node hands V8 the cgroup's limit when it is below the machine's memory
 * (`process.constrainedMemory()`), and V8 sizes its heap, the young generation too, from that: what a function app
 * instance of that size would see. cgroup v1 (`memory.limit_in_bytes`) and v2 (`memory.max`, where the parent
 * delegates the memory controller) are both handled (kernel docs: admin-guide/cgroup-v1/memory.rst, cgroup-v2.rst).
 */
export function createMemoryGroup(limitMB: number, name: string): MemoryGroup | { unavailable: string } {
  if (process.platform !== 'linux') return { unavailable: `cgroups are Linux's (this is ${process.platform})` };
  let own: string;
  try {
    own = readFileSync('/proc/self/cgroup', 'utf8');
  } catch {
    return { unavailable: 'no /proc/self/cgroup' };
  }
  // v1: "<id>:memory:<path>" (the memory hierarchy); v2: "0::<path>" (the single one).
  const v1 = /^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(.*)$/m.exec(own)?.[1];
  const v2 = /^0::(.*)$/m.exec(own)?.[1];
  const [parent, limitFile] =
    v1 !== undefined && existsSync('/sys/fs/cgroup/memory')
      ? [join('/sys/fs/cgroup/memory', v1), 'memory.limit_in_bytes']
      : v2 !== undefined
        ? [join('/sys/fs/cgroup', v2), 'memory.max']
        : [undefined, ''];
  if (parent === undefined) return { unavailable: 'no memory cgroup controller' };
  const dir = join(parent, `${name}-${process.pid}`);
  try {
    mkdirSync(dir);
  } catch (error) {
    return { unavailable: `cannot make a cgroup under ${parent}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` };
  }
  try {
    if (!existsSync(join(dir, limitFile))) throw new Error(`the memory controller is not delegated to ${parent}`);
    writeFileSync(join(dir, limitFile), String(limitMB * 1024 * 1024));
  } catch (error) {
    rmdirSync(dir);
    return { unavailable: `cannot limit a cgroup's memory: ${error instanceof Error ? error.message : String(error)}` };
  }
  return { dir, limitMB, remove: () => rmdirSync(dir) };
}

/** The NODE_OPTIONS deploy.sh sets on the function app: scripts/node-options' lines that are not comments or blank. */
export function deployedNodeOptions(repoRoot: string): string {
  return readFileSync(join(repoRoot, 'scripts', 'node-options'), 'utf8').split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#')).join(' ');
}
