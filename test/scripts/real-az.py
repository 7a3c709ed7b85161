"""Runs az command lines through the real Azure CLI's own parser, without a network and without a login.

Run with the python of the pinned azure-cli venv (python/requirements-azure-cli.txt), under `unshare -n`, with
AZURE_CONFIG_DIR and AZURE_EXTENSION_DIR set to an empty private directory. Reads JSON from stdin:
  {"lines": [[arg, ...], ...], "commands": ["group show", ...], "groups": ["iot", ...]}
and writes JSON to stdout:
  {"version": "2.91.0", "interfaces": ["lo"],
   "lines": [{"exit": 1, "parsed": true, "stderr": "ERROR: Please run 'az login' ...", "seconds": 0.2}, ...],
   "commands": {"group show": [{"names": ["--name", "-n", ...], "nargs": null, "required": true, "choices": null}, ...]
                or null for a command core az does not have},
   "groups": {"iot": ["iot central app create", ...every command core az loads for that top-level group]}}

Each line is one `az` invocation as azure/cli/__main__.py makes it (get_default_cli().invoke(argv)): the command
index picks the command modules, their loaders build the command and its arguments, knack's argparse parser parses
the line. "parsed" says the parser accepted it (knack's post-parse event fired); what the parser refuses exits 2
before anything else runs. With no login a line then stops at "Please run 'az login'" (exit 1), or at the missing
network (exit 1): neither is about the line.

A command's "options" are the argparse actions of the subparser az builds for it (global arguments included), so a
stand-in's flag table can be held against the real one.

Speed: the parent imports azure.cli.core and, by running one line of each top-level group, the modules those lines
need; each line then runs in a forked child (with the parent's objects frozen out of garbage collection, so the
child does not copy them), so it costs its own loading and parsing (about 0.05 s of CPU), not a Python start and its
imports (about a second).
"""
import gc
import json
import os
import shutil
import socket
import sys
import tempfile
import time

JOBS = max(1, min(4, os.cpu_count() or 1))


def warm_up(lines):
    """Imports, once in this process, what each child would import again: azure.cli.core, and for each top-level
    command group of the jobs its command module, arguments, validators and the error path (one invocation of the
    group's first line, its output discarded)."""
    from azure.cli.core import get_default_cli
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    seen = set()
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        for argv in lines:
            if not argv or argv[0] in seen:
                continue
            seen.add(argv[0])
            try:
                get_default_cli().invoke(argv)
            except SystemExit:
                pass
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(devnull)


def describe(command_parser):
    options = []
    for action in command_parser._actions:  # pylint: disable=protected-access
        if not action.option_strings:
            continue
        choices = None
        if action.choices is not None:
            choices = [str(c) for c in action.choices]
        nargs = action.nargs
        options.append({
            'names': list(action.option_strings),
            'nargs': nargs if nargs is None or isinstance(nargs, (int, str)) else str(nargs),
            'required': bool(action.required),
            'choices': choices,
        })
    return options


def child(kind, argv, out_path):
    """In the forked child: one az invocation; the result goes to out_path. Never returns.

    kind 'line': run the line to its end (the login, with none). 'command': stop once the command's parser is built.
    'group': stop once the command table of the top-level group is loaded (before az trims it to the one command).
    Every kind reports the options of the command it built a parser for.
    """
    started = time.monotonic()
    result = {'exit': None, 'parsed': False, 'stderr': '', 'command': None, 'options': None, 'names': None}
    err_path = out_path + '.stderr'
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(err, 2)
        from knack.events import EVENT_INVOKER_CMD_TBL_LOADED, EVENT_INVOKER_POST_PARSE_ARGS
        from azure.cli.core.commands.events import EVENT_INVOKER_PRE_CMD_TBL_TRUNCATE
        from azure.cli.core import get_default_cli
        cli = get_default_cli()

        def parsed(_cli, **_kwargs):
            result['parsed'] = True

        def untrimmed(cli_ctx, **_kwargs):
            if kind == 'group':
                result['names'] = sorted(cli_ctx.invocation.commands_loader.command_table)
                raise SystemExit(0)

        def loaded(_cli, **kwargs):
            table = kwargs['cmd_tbl']
            parser = kwargs['parser']
            if len(table) == 1:
                command = next(iter(table))
                if command in parser.subparser_map:
                    result['command'] = command
                    result['options'] = describe(parser.subparser_map[command])
            if kind == 'command':
                raise SystemExit(0)

        cli.register_event(EVENT_INVOKER_POST_PARSE_ARGS, parsed)
        cli.register_event(EVENT_INVOKER_PRE_CMD_TBL_TRUNCATE, untrimmed)
        cli.register_event(EVENT_INVOKER_CMD_TBL_LOADED, loaded)
        try:
            result['exit'] = cli.invoke(argv)
        except SystemExit as ex:
            result['exit'] = ex.code if isinstance(ex.code, int) else (0 if ex.code is None else 1)
    except BaseException as ex:  # pylint: disable=broad-except
        result['exit'] = -1
        result['stderr'] = 'driver: {!r}'.format(ex)
    finally:
        try:
            sys.stderr.flush()
        except BaseException:  # pylint: disable=broad-except
            pass
        try:
            with open(err_path, encoding='utf-8', errors='replace') as f:
                result['stderr'] += f.read()
            result['seconds'] = round(time.monotonic() - started, 3)
            with open(out_path, 'w', encoding='utf-8') as f:
                json.dump(result, f)
        finally:
            os._exit(0)


def run_all(jobs):
    """jobs: [(kind, argv)]. Runs each in a forked child, JOBS at a time; answers the results in order."""
    work = tempfile.mkdtemp(prefix='real-az-')
    try:
        return run_in(work, jobs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_in(work, jobs):
    results = [None] * len(jobs)
    running = {}
    next_job = 0
    while next_job < len(jobs) or running:
        while next_job < len(jobs) and len(running) < JOBS:
            kind, argv = jobs[next_job]
            out_path = os.path.join(work, str(next_job))
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                child(kind, argv, out_path)
            running[pid] = (next_job, out_path)
            next_job += 1
        pid, _status = os.wait()
        if pid not in running:
            continue
        index, out_path = running.pop(pid)
        try:
            with open(out_path, encoding='utf-8') as f:
                results[index] = json.load(f)
        except OSError:
            results[index] = {'exit': -1, 'parsed': False, 'stderr': 'driver: the child died without a result',
                              'command': None, 'options': None, 'names': None, 'seconds': None}
    return results


def main():
    request = json.load(sys.stdin)
    lines = request.get('lines', [])
    wanted = request.get('commands', [])
    groups = request.get('groups', [])
    started = time.monotonic()
    warm_up(lines)
    warmed = time.monotonic()
    # The children share the parent's objects copy-on-write; a collection in a child would walk (and so copy) them
    # all. Frozen objects are left out of collections: half the children's CPU time.
    gc.collect()
    gc.freeze()
    gc.disable()
    line_results = run_all([('line', argv) for argv in lines])
    # A command's options come from any line that ran it; the others get a run of their own.
    commands = {r['command']: r['options'] for r in line_results if r['command'] in wanted}
    missing = [c for c in wanted if c not in commands]
    for c, r in zip(missing, run_all([('command', c.split()) for c in missing])):
        if r['command'] == c:
            commands[c] = r['options']
    group_results = run_all([('group', [g]) for g in groups])
    print('real-az.py: warm-up {:.1f} s; {} lines, {} commands, {} groups {:.1f} s'.format(
        warmed - started, len(lines), len(missing), len(groups), time.monotonic() - warmed), file=sys.stderr)
    from azure.cli.core import __version__
    json.dump({
        'version': __version__,
        # Under `unshare -n` the only interface is a loopback that is down: nothing can reach a network.
        'interfaces': [name for _, name in socket.if_nameindex()],
        'lines': [{k: r[k] for k in ('exit', 'parsed', 'stderr', 'seconds')} for r in line_results],
        'commands': {c: commands.get(c) for c in wanted},
        'groups': {g: r['names'] for g, r in zip(groups, group_results)},
    }, sys.stdout)


if __name__ == '__main__':
    main()
