/**
 * Runs scripts/*.sh for real (bash) with the strict stand-ins for az, npm and func first on PATH
 * (fixtures/fake-cli.mjs, flags from fixtures/az-commands.mjs). openssl and unzip are the real ones. Each sandbox has
 * its own directory, TMPDIR (tmp/, so a test can see every temporary file a script leaves), state file and call log.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
  /** TMPDIR of every run: empty between runs unless a script leaked a temporary file. */
  tmp: string;
  run(script: string, args: string[], options?: { env?: Record<string, string>; cwd?: string }): RunResult;
  /**
   * Starts a script in its own process group, waits until the stand-in call matching `hang` (FAKE_AZ_HANG) is
   * running, sends `signal` to the group (as Ctrl-C does to a terminal's job) or to bash alone, and resolves when the
   * script has ended.
   */
  interrupt(script: string, args: string[], options: { hang: string; signal: NodeJS.Signals; group: boolean; env?: Record<string, string> }): Promise<{ status: number | null; signal: NodeJS.Signals | null; stderr: string; hungPid: number; tmpAtSignal: { path: string; mode: number }[] }>;
  /** Runs the stand-in az directly (not through a script). */
  az(args: string[], env?: Record<string, string>): RunResult;
  /** Every argv the stand-ins recorded so far in this sandbox. */
  allCalls(): string[][];
  state(): any;
  setState(mutate: (state: any) => void): void;
  cleanup(): void;
}

export function sandbox(options: { tools?: string[] } = {}): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), 'dps-scripts-'));
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  for (const tool of options.tools ?? ['az', 'npm']) {
    const file = join(bin, tool);
    writeFileSync(file, `#!/usr/bin/env bash\nexec node ${JSON.stringify(FAKE)} ${tool} "$@"\n`);
    chmodSync(file, 0o755);
  }
  const log = join(dir, 'calls.jsonl');
  const stateFile = join(dir, 'state.json');
  writeFileSync(log, '');
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp);
  // The system PATH minus anything that could be a real az/func: the stand-ins come first anyway.
  const env = {
    PATH: `${bin}:/usr/local/bin:/usr/bin:/bin:${process.env.PATH ?? ''}`,
    HOME: dir,
    LANG: 'C.UTF-8',
    TMPDIR: tmp,
    FAKE_AZ_LOG: log,
    FAKE_AZ_STATE: stateFile,
  };
  let seen = 0;
  return {
    dir,
    tmp,
    run(script, args, runOptions = {}) {
      const result = spawnSync('bash', [join(ROOT, 'scripts', script), ...args], {
        cwd: runOptions.cwd ?? dir,
        env: { ...env, ...runOptions.env },
        encoding: 'utf8',
        timeout: 100_000,
      });
      const lines = readFileSync(log, 'utf8').split('\n').filter((l) => l !== '');
      const calls = lines.slice(seen).map((l) => JSON.parse(l) as string[]);
      seen = lines.length;
      return { status: result.status, stdout: result.stdout, stderr: result.stderr, calls };
    },
    interrupt(script, args, { hang, signal, group, env: extra = {} }) {
      const mark = join(dir, 'hang.pid');
      rmSync(mark, { force: true });
      const child = spawn('bash', [join(ROOT, 'scripts', script), ...args], {
        cwd: dir,
        env: { ...env, ...extra, FAKE_AZ_HANG: hang, FAKE_AZ_HANG_MARK: mark },
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      let hungPid = 0;
      let tmpAtSignal: { path: string; mode: number }[] = [];
      child.stderr.on('data', (chunk) => (stderr += chunk));
      child.stdout.resume();
      return new Promise((resolvePromise, reject) => {
        const timer = setTimeout(() => {
          process.kill(-child.pid!, 'SIGKILL');
          reject(new Error(`the call matching "${hang}" never started: ${stderr}`));
        }, 60_000);
        const poll = setInterval(() => {
          if (!existsSync(mark) || readFileSync(mark, 'utf8') === '') return;
          clearInterval(poll);
          hungPid = Number(readFileSync(mark, 'utf8'));
          tmpAtSignal = walk(tmp);
          if (group) process.kill(-child.pid!, signal);
          else process.kill(child.pid!, signal);
        }, 20);
        child.on('exit', (status, sig) => {
          clearTimeout(timer);
          clearInterval(poll);
          seen = readFileSync(log, 'utf8').split('\n').filter((l) => l !== '').length;
          resolvePromise({ status, signal: sig, stderr, hungPid, tmpAtSignal });
        });
      });
    },
    az(args, extra = {}) {
      const result = spawnSync(process.execPath, [FAKE, 'az', ...args], { cwd: dir, env: { ...env, ...extra }, encoding: 'utf8', timeout: 60_000 });
      const lines = readFileSync(log, 'utf8').split('\n').filter((l) => l !== '');
      const calls = lines.slice(seen).map((l) => JSON.parse(l) as string[]);
      seen = lines.length;
      return { status: result.status, stdout: result.stdout, stderr: result.stderr, calls };
    },
    allCalls: () => readFileSync(log, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as string[]),
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

/** A call mutates Azure when it creates, sets, assigns, deletes, tags, deploys or POSTs (func publish too). */
export function isWrite(call: string[]): boolean {
  if (call[0] === 'func') return true;
  if (call[0] !== 'az') return false;
  const words: string[] = [];
  for (const w of call.slice(1)) {
    if (w.startsWith('-')) break;
    words.push(w);
  }
  if (words[0] === 'rest') return false; // the listkeys POST reads keys
  return words.some((w) => ['create', 'set', 'set-attributes', 'assign', 'delete', 'purge', 'recover', 'update', 'add', 'config-zip'].includes(w));
}

/** Every file and directory under DIR with its permission bits. */
function walk(dir: string): { path: string; mode: number }[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    const mode = statSync(path).mode;
    const self = { path, mode: mode & 0o777 };
    return (mode & 0o170000) === 0o040000 ? [self, ...walk(path)] : [self];
  });
}

/** Files a run left in the sandbox's TMPDIR. */
export function leftovers(box: Sandbox): string[] {
  return readdirSync(box.tmp);
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

/**
 * Every `az` line of every script's --dry-run plan, as the script prints it (a few with a leading `(cd DIR && `).
 * Checked against the strict table (fake-cli.test.ts) and against the real az's parser (real-az.test.ts).
 */
export function dryRunAzLines(box: Sandbox): string[] {
  const project = join(box.dir, 'project');
  mkdirSync(project, { recursive: true });
  for (const f of ['package.json', 'host.json']) writeFileSync(join(project, f), '{}\n');
  const pem = join(box.dir, 'dry.pub.pem');
  if (!existsSync(pem)) {
    const keygen = box.run('keygen.sh', ['--private-key', 'dry.key.pem']);
    if (keygen.status !== 0) throw new Error(`keygen.sh failed: ${keygen.stderr}`);
  }
  const dps = ['-g', 'rg', '--dps', 'dpsx'];
  const plans: [string, string[]][] = [
    ['deploy.sh', ['--location', 'westeurope', '--prefix', 'dry1', '--project-dir', project, '--setting', 'IOT_HUB_HOSTNAME=h']],
    ['deploy.sh', ['--location', 'westeurope', '--prefix', 'dry1', '--no-replay', '--operator', '00000000-0000-4000-8000-000000000001', '--no-publish']],
    ['register-key.sh', ['--vault', 'kvx', '--registration-id', 'a', '--public-key', pem, '--tag', 'k=v', '--disabled']],
    ['activate.sh', ['--vault', 'kvx', '--group-id', 'g', '--tag', 'k=v']],
    ['enroll.sh', [...dps, '--app', 'fn', '--registration-id', 'a', '--device-id', 'dev-a', '--show-keys']],
    ['enroll.sh', [...dps, '--app', 'fn', '--group-id', 'g', '--registration-id', 'a', '--show-keys', '--update']],
    ['deprovision.sh', [...dps, '--vault', 'kvx', '--registration-id', 'a', '--purge']],
    ['deprovision.sh', [...dps, '--vault', 'kvx', '--registration-id', 'a', '--group-id', 'g']],
    ['deprovision.sh', [...dps, '--vault', 'kvx', '--group-id', 'g']],
    ['deploy-portal.sh', ['--location', 'westeurope', '--prefix', 'dry2']],
    ['deploy-portal.sh', ['--location', 'westeurope', '-g', 'rg', '--vault', 'kvx', '--app', 'portalx', '--storage', 'stx', '--client-id', '00000000-0000-4000-8000-000000000002', '--no-publish']],
    ['deploy.sh', ['--location', 'westeurope', '--prefix', 'dry3', '--project-dir', project, '--portal']],
  ];
  const lines: string[] = [];
  for (const [script, args] of plans) {
    const dry = box.run(script, [...args, '--dry-run']);
    if (dry.status !== 0) throw new Error(`${script} ${args.join(' ')} --dry-run: exit ${dry.status}: ${dry.stderr}`);
    lines.push(...dry.stdout.split('\n').filter((l) => /^(\(cd \S+ && )?az /.test(l)));
  }
  return lines;
}

/**
 * The argv each line hands to `az` (without the `az`), from one bash that runs them all with `az` a function that
 * prints its argv: bash reads each line as the user's shell would (quoting, @file, the cd), without a process per
 * line (a few hundred node starts outlast any timeout on a busy machine).
 */
export function argvsOf(lines: readonly string[], cwd: string): string[][] {
  const script = ['az() { printf \'%s\\0\' "$#" "$@"; }', ...lines].join('\n');
  const run = spawnSync('bash', ['-c', script], { cwd, encoding: 'utf8' });
  if (run.status !== 0 || run.stderr !== '') throw new Error(`bash could not read the plan's lines (exit ${run.status}): ${run.stderr}`);
  const fields = run.stdout.split('\0');
  const argvs: string[][] = [];
  let at = 0;
  while (at < fields.length - 1) {
    const count = Number(fields[at]);
    argvs.push(fields.slice(at + 1, at + 1 + count));
    at += 1 + count;
  }
  if (argvs.length !== lines.length) throw new Error(`${lines.length} lines gave ${argvs.length} az calls`);
  return argvs;
}

/**
 * Runs every script for real against the strict stand-in from an empty subscription, in the order a user would
 * (deploy, then deploy --portal: the webhook's second run and the portal's first; keygen, register-key, activate,
 * enroll, deprovision), and answers every az argv the stand-in recorded. The same steps as lifecycle.test.ts, without
 * its checks: for tests that hold the recorded calls against something else (real-az.test.ts).
 */
export function recordEveryScript(box: Sandbox): string[][] {
  const env = { DPSJWT_RESOURCE_GROUP: 'rec-rg', DPSJWT_DPS: 'rec-dps', DPSJWT_VAULT: 'rec-kv', DPSJWT_APP: 'rec-fn', DPSJWT_PURGE_WAIT_SECONDS: '0' };
  const project = join(box.dir, 'rec-project');
  mkdirSync(join(project, 'node_modules'), { recursive: true });
  for (const f of ['package.json', 'host.json']) writeFileSync(join(project, f), '{}\n');
  const deploy = ['--location', 'westeurope', '--prefix', 'rec', '--hubs', '2', '--project-dir', project];
  const steps: [string, string[]][] = [
    ['deploy.sh', deploy],
    // The second run of the webhook's deploy, and the portal's first (deploy-portal.sh).
    ['deploy.sh', [...deploy, '--portal']],
    ['keygen.sh', ['--registration-id', 'rec-1']],
    ['keygen.sh', ['--registration-id', 'rec-2']],
    ['keygen.sh', ['--private-key', 'rec-line.key.pem']],
    ['register-key.sh', ['--registration-id', 'rec-1', '--public-key', 'rec-1.pub.pem', '--tag', 'model=s1', '--disabled']],
    ['register-key.sh', ['--registration-id', 'rec-2', '--public-key', 'rec-2.pub.pem']],
    ['register-key.sh', ['--group-id', 'rec-line', '--public-key', 'rec-line.pub.pem']],
    ['activate.sh', ['--registration-id', 'rec-1', '--tag', 'owner=acme']],
    ['enroll.sh', ['--registration-id', 'rec-1']],
    ['enroll.sh', ['--group-id', 'rec-line', '--registration-id', 'rec-2', '--show-keys']],
    ['enroll.sh', ['--registration-id', 'rec-1', '--update', '--hubs', 'rec-hub-1']],
    ['deprovision.sh', ['--registration-id', 'rec-1', '--purge']],
    ['deprovision.sh', ['--registration-id', 'rec-2', '--group-id', 'rec-line']],
    ['deprovision.sh', ['--group-id', 'rec-line']],
  ];
  const before = box.allCalls().length;
  for (const [script, args] of steps) {
    if (script === 'deprovision.sh' && args[1] === 'rec-1') {
      // The devices registered (as DPS would record them), so deprovision has registrations and hub devices to delete.
      box.setState((s) => {
        s.dps['rec-dps'].registrations['rec-1'] = { registrationId: 'rec-1', assignedHub: 'rec-hub-1.azure-devices.net', deviceId: 'rec-1' };
        s.dps['rec-dps'].registrations['rec-2'] = { registrationId: 'rec-2', assignedHub: 'rec-hub-2.azure-devices.net', deviceId: 'rec-2' };
        s.hubs['rec-hub-1'].devices['rec-1'] = {};
        s.hubs['rec-hub-2'].devices['rec-2'] = {};
      });
    }
    const r = box.run(script, args, { env });
    if (r.status !== 0) throw new Error(`${script} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  }
  return box.allCalls().slice(before).filter((c) => c[0] === 'az').map((c) => c.slice(1));
}
