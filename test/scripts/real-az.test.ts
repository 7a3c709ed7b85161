import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pythonEnvBin } from '../support/python.js';
import { COMMANDS, extensionOf, flagsOf, parseSpec } from './fixtures/az-commands.mjs';
import { argvsOf, dryRunAzLines, recordEveryScript, sandbox, type Sandbox } from './harness.js';

// Issue 23 item 2: the strict stand-in's table is our reading of az; here the real azure-cli (python/
// requirements-azure-cli.txt) parses every base-command line the scripts issue, and the table's base commands are
// held against the real CLI's own argument definitions, so the two cannot drift. The az iot, authV2 and
// application-insights extensions are not on PyPI: their lines stay with the table (EXTENSION_COMMANDS).
const DRIVER = join(import.meta.dirname, 'real-az.py');

interface LineResult { exit: number; parsed: boolean; stderr: string; seconds: number }
interface RealOption { names: string[]; nargs: number | string | null; required: boolean; choices: string[] | null }
interface DriverAnswer {
  version: string;
  /** The network interfaces the driver saw (a network namespace of its own has only a loopback, down). */
  interfaces: string[];
  lines: LineResult[];
  /** The options of each command's real parser, or null when core az has no such command. */
  commands: Record<string, RealOption[] | null>;
  /** Every command core az loads for a top-level group. */
  groups: Record<string, string[]>;
}

/** Runs the driver under a network namespace of its own (no interface but a down loopback), with a private az config. */
function realAz(box: Sandbox, request: { lines: string[][]; commands: string[]; groups: string[] }): DriverAnswer {
  const home = join(box.dir, 'real-az-home');
  mkdirSync(home, { recursive: true });
  const python = join(pythonEnvBin('requirements-azure-cli'), 'python');
  // As root a plain network namespace; otherwise a user namespace maps us to root inside it first.
  const unshare = process.getuid?.() === 0 ? ['-n'] : ['-r', '-n'];
  const run = spawnSync('unshare', [...unshare, python, DRIVER], {
    cwd: box.dir,
    input: JSON.stringify(request),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: 110_000,
    env: {
      PATH: '/usr/local/bin:/usr/bin:/bin',
      HOME: home,
      TMPDIR: home,
      LANG: 'C.UTF-8',
      AZURE_CONFIG_DIR: join(home, 'azure'),
      AZURE_EXTENSION_DIR: join(home, 'extensions'),
      AZURE_CORE_COLLECT_TELEMETRY: 'false',
      AZURE_CORE_NO_COLOR: 'true',
      AZURE_CORE_SURVEY_MESSAGE: 'false',
      AZURE_EXTENSION_USE_DYNAMIC_INSTALL: 'no',
      AZURE_LOGGING_ENABLE_LOG_FILE: 'no',
    },
  });
  if (run.status !== 0) throw new Error(`real-az.py (under unshare ${unshare.join(' ')}): exit ${run.status} ${run.error ?? ''}\n${run.stderr}`);
  return JSON.parse(run.stdout) as DriverAnswer;
}

/** The command words of an argv: everything before the first flag. */
const commandOf = (argv: readonly string[]) => {
  const flag = argv.findIndex((a) => a.startsWith('-'));
  return (flag < 0 ? argv : argv.slice(0, flag)).join(' ');
};

/** What the real parser said, shortened to its first ERROR line (it names the flag). */
const refusal = (r: LineResult) => r.stderr.split('\n').find((l) => l.startsWith('ERROR:')) ?? r.stderr.trim();

/**
 * The argv with each @FILE argument whose file is not there (a dry run's placeholder such as @<app-roles.json>, or a
 * temporary file the script removed after the call) pointing at a stand-in JSON file instead: the real parser reads
 * such a file as it parses (validate_file_or_dict), and the line's flags are what is checked here, not its content.
 */
function withFilesPresent(argv: string[], cwd: string, standIn: string): { argv: string[]; replaced: boolean } {
  let replaced = false;
  const out = argv.map((a) => {
    if (!a.startsWith('@') || existsSync(resolve(cwd, a.slice(1)))) return a;
    replaced = true;
    return `@${standIn}`;
  });
  return { argv: out, replaced };
}

/**
 * Where the table's flags for COMMAND differ from the real parser's options (REAL, or null when core az has no such
 * command): a flag or alias az does not have, another arity, required or not, other choices; and a flag az requires
 * that the table does not list.
 */
function differences(command: string, specs: ReturnType<typeof parseSpec>, real: RealOption[] | null, version: string): string[] {
  if (!real) return [`${command}: no such command in azure-cli ${version}`];
  // argparse's nargs as the table's markers: 0 ~, '+' +, '*' *, '?' ? (get_three_state_flag), None exactly one.
  const kindOf = (o: RealOption) => (o.nargs === 0 ? 'none' : o.nargs === '+' ? 'many' : o.nargs === '*' ? 'any' : o.nargs === '?' ? 'bool' : 'one');
  const problems: string[] = [];
  for (const spec of specs) {
    const flag = `${command} ${spec.names[0]}`;
    const option = real.find((o) => o.names.includes(spec.names[0]!));
    if (!option) {
      problems.push(`${flag}: no such option (real: ${real.map((o) => o.names.join('|')).join(' ')})`);
      continue;
    }
    const otherNames = spec.names.filter((n) => !option.names.includes(n));
    if (otherNames.length > 0) problems.push(`${flag}: ${otherNames.join(' ')} not a name of it (real: ${option.names.join(' ')})`);
    if (kindOf(option) !== spec.kind) problems.push(`${flag}: table ${spec.kind}, real nargs ${JSON.stringify(option.nargs)}`);
    if (option.required !== spec.required) problems.push(`${flag}: table ${spec.required ? '' : 'not '}required, real ${option.required ? '' : 'not '}required`);
    if (spec.kind !== 'bool') {
      const realChoices = option.choices?.map((c) => c.toLowerCase()).sort();
      const tableChoices = spec.choices?.map((c) => c.toLowerCase()).sort();
      if (JSON.stringify(realChoices) !== JSON.stringify(tableChoices)) problems.push(`${flag}: table choices ${tableChoices?.join(',') ?? 'any'}, real ${realChoices?.join(',') ?? 'any'}`);
    }
  }
  for (const option of real) {
    if (option.required && !specs.some((s) => option.names.includes(s.names[0]!))) problems.push(`${command}: the real CLI requires ${option.names.join('/')}, the table does not list it`);
  }
  return problems;
}

describe('the real Azure CLI parses every base az line the scripts issue (no network, no login)', () => {
  let box: Sandbox;
  let core: string[][] = [];
  let extension: string[][] = [];
  let standIns = 0;
  let phases = '';
  let answer: DriverAnswer;
  let controls: LineResult[] = [];
  const tableCore = Object.keys(COMMANDS).filter((c) => extensionOf(c) === undefined);
  const tableExtension = Object.keys(COMMANDS).filter((c) => extensionOf(c) !== undefined);
  // Lines the real parser must refuse, so this check is seen to be able to fail: an unknown flag, a missing
  // required flag, a value outside the choices.
  const CONTROLS = [
    ['keyvault', 'secret', 'show', '--vault-name', 'kv', '--name', 'n', '--frob', 'x'],
    ['group', 'create', '--name', 'rg'],
    ['tag', 'update', '--resource-id', '/x', '--operation', 'Append', '--tags', 'a=b'],
  ];

  beforeAll(() => {
    const started = performance.now();
    box = sandbox();
    const dry = argvsOf(dryRunAzLines(box), box.dir);
    const planned = performance.now();
    const recorded = recordEveryScript(box);
    const ran = performance.now();
    const standIn = join(box.dir, 'stand-in.json');
    writeFileSync(standIn, '[]\n');
    const distinct = new Map<string, string[]>();
    for (const argv of [...dry, ...recorded]) distinct.set(JSON.stringify(argv), argv);
    for (const argv of distinct.values()) {
      if (extensionOf(commandOf(argv)) !== undefined) {
        extension.push(argv);
        continue;
      }
      const present = withFilesPresent(argv, box.dir, standIn);
      if (present.replaced) standIns++;
      core.push(present.argv);
    }
    const groups = [...new Set(tableExtension.map((c) => c.split(' ')[0]!))];
    answer = realAz(box, { lines: [...core, ...CONTROLS], commands: tableCore, groups });
    phases = `dry runs ${((planned - started) / 1000).toFixed(1)} s, recorded runs ${((ran - planned) / 1000).toFixed(1)} s, real az ${((performance.now() - ran) / 1000).toFixed(1)} s`;
    controls = answer.lines.slice(core.length);
    answer.lines = answer.lines.slice(0, core.length);
  }, 600_000);
  afterAll(() => box?.cleanup());

  it('is azure-cli 2.91.0, as pinned, with no network interface but its own loopback', () => {
    expect(answer.version).toBe('2.91.0');
    expect(answer.interfaces).toEqual(['lo']);
  });

  it('refuses with exit 2 before any login what its parser refuses (the check can fail)', () => {
    expect(controls.map((r) => [r.exit, r.parsed, refusal(r)])).toEqual([
      [2, false, 'ERROR: unrecognized arguments: --frob x'],
      [2, false, 'ERROR: the following arguments are required: --location/-l'],
      [2, false, "ERROR: az tag update: 'Append' is not a valid value for '--operation'. Allowed values: Merge, Replace, Delete."],
    ]);
  });

  it('accepts every distinct core line of the --dry-run plans and the recorded runs (each gets as far as the login)', () => {
    expect(core.length).toBeGreaterThan(150);
    const refused = core.map((argv, n) => ({ line: `az ${argv.join(' ')}`, r: answer.lines[n]! })).filter(({ r }) => r.exit === 2 || !r.parsed);
    expect(refused.map(({ line, r }) => `${line}\n  -> exit ${r.exit}: ${refusal(r)}`)).toEqual([]);
    // No login and no network: each line stops at the missing account or network, after the parser took it.
    for (const [n, r] of answer.lines.entries()) expect(r.exit, `az ${core[n]!.join(' ')}: ${r.stderr}`).not.toBe(0);
    const stops = new Map<string, number>();
    for (const r of answer.lines) {
      const why = /az login/.test(r.stderr) ? 'the login' : /network connection|Failed to resolve/.test(r.stderr) ? 'the network' : /is not installed/.test(r.stderr) ? 'an extension not installed' : refusal(r);
      stops.set(why, (stops.get(why) ?? 0) + 1);
    }
    const stopped = [...stops].map(([why, n]) => `${n} at ${why}`).join(', ');
    console.info(`real az ${answer.version}: ${core.length} distinct core lines accepted (${stopped}), ${refused.length} refused (${standIns} with a stand-in @file); ${extension.length} distinct extension lines left to the table; ${phases}`);
  });

  it('leaves to the table only the lines of commands core az does not have (or that authV2 replaces)', () => {
    expect(extension.length).toBeGreaterThan(20);
    for (const command of tableExtension) {
      const inCore = answer.groups[command.split(' ')[0]!]!.includes(command);
      // `webapp auth show/update` are core's classic (v1) commands; the scripts add authV2 first, which replaces them.
      expect(inCore, `${command} ${inCore ? 'is' : 'is not'} in core azure-cli ${answer.version}`).toBe(extensionOf(command) === 'authV2' && !command.startsWith('webapp auth microsoft'));
    }
  });

  it("every base command of the strict table exists in the real CLI with the table's flags, arity, required flags and choices", () => {
    const problems = tableCore.flatMap((command) => differences(command, flagsOf(command), answer.commands[command] ?? null, answer.version));
    expect(problems).toEqual([]);
  });

  it('the cross-check sees a table entry that differs from the real CLI (it can fail)', () => {
    const wrong = parseSpec('--name|-n|--resource-group|-g --location|-l! --tags+ --frob --managed-by=a,b');
    expect(differences('group create', wrong, answer.commands['group create']!, answer.version)).toEqual([
      'group create --name: table not required, real required',
      'group create --tags: table many, real nargs "*"',
      expect.stringMatching(/^group create --frob: no such option/),
      'group create --managed-by: table choices a,b, real any',
    ]);
    expect(differences('group frob', [], null, answer.version)).toEqual(['group frob: no such command in azure-cli 2.91.0']);
  });
});
