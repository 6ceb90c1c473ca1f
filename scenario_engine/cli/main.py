"""The ``scenario-engine`` command: check, compile, convert and print the schema of scenarios.

Exit status: 0 success, 1 a scenario has errors, 2 the command was used wrongly (a missing
file, an unknown option), 3 an internal error (a bug).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..errors import ScenarioError, UsageError
from ..expr.syntax import name_regex
from ..language.ir import Loaded
from ..language.loader import load_file, load_paths, scenario_files
from ..language.schema import schema_text

__all__ = ["main"]

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except UsageError as err:
        print(f"scenario-engine: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as err:  # a bug of ours: say so in one line, the traceback on request
        if os.environ.get("SCENARIO_ENGINE_DEBUG"):
            raise
        print(f"scenario-engine: internal error: {type(err).__name__}: {err}\n"
              "  this is a bug in scenario-engine, not in your scenario; run again with "
              "SCENARIO_ENGINE_DEBUG=1 for the details, and please report it", file=sys.stderr)
        return EXIT_INTERNAL
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenario-engine",
        description="WebSocket mock servers written as declarative scenario files.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="validate scenario files and report every error")
    check.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    check.add_argument("--format", choices=("text", "json", "github"), default="text",
                       help="text (default), json, or github (GitHub Actions annotations)")
    check.set_defaults(run=_check)

    compile_ = commands.add_parser("compile", help="print a scenario's IR as JSON")
    compile_.add_argument("file", metavar="FILE")
    compile_.add_argument("--source-map", action="store_true",
                          help="print {ir, sourceMap} with each node's line and column")
    compile_.set_defaults(run=_compile)

    schema = commands.add_parser("schema", help="print the JSON Schema of scenarios")
    schema.set_defaults(run=_schema)

    convert = commands.add_parser("convert", help="rewrite a scenario in the other spelling")
    convert.add_argument("file", metavar="FILE")
    convert.add_argument("--to", choices=("yaml", "mock"), required=True)
    convert.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    convert.set_defaults(run=_convert)

    test = commands.add_parser(
        "test", help="run the conversation tests of scenario files",
        description="Run the `test` blocks of scenario files: against each file's own mock "
        "(started in this process on a free port), or with --target against another server.")
    test.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    test.add_argument("--target", metavar="URL", type=_ws_url,
                      help="run the tests against this server (ws://host:port[/base]) instead "
                      "of the scenarios' own mock: contract testing of a real backend")
    test.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    test.add_argument("-k", "--filter", metavar="TEXT",
                      help="run only the tests whose 'FILE::NAME' contains TEXT")
    test.add_argument("--jobs", type=_positive_int, metavar="N",
                      help="tests run at once (default 8 against mocks, 1 against --target, "
                      "whose state the tests share)")
    test.add_argument("--timeout", type=_positive_float, default=60.0, metavar="SECONDS",
                      help="most time one test may take (default 60)")
    test.add_argument("--format", choices=("text", "github"), default="text",
                      help="github: also print failures as GitHub Actions annotations")
    test.add_argument("--set", action="append", type=_assignment, default=[],
                      metavar="NAME=VALUE",
                      help="replace a top-level constant as the tests see it (VALUE is JSON, "
                      "or else text): values only the --target server knows, such as tokens")
    test.add_argument("--insecure", action="store_true",
                      help="accept any certificate from a wss:// target (self-signed staging "
                      "servers); SSL_CERT_FILE=ca.pem trusts one CA instead")
    test.set_defaults(run=_test)

    serve = commands.add_parser("serve", help="serve scenario files as a WebSocket server")
    serve.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8765,
                       help="port to listen on (default 8765; 0 picks a free one)")
    serve.add_argument("--certfile", help="TLS certificate (PEM): serve wss://")
    serve.add_argument("--keyfile", help="TLS private key (PEM), with --certfile")
    serve.add_argument("--max-connections", type=_positive_int, metavar="N",
                       help="at most N clients at once on the whole server (HTTP 503 beyond)")
    serve.add_argument("--open-timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                       help="time a client has to complete the opening handshake (default 10)")
    serve.add_argument("--quiet", action="store_true", help="log only errors")
    serve.add_argument("--journal", metavar="FILE",
                       help="write every connect, reject, message and close to FILE as JSON "
                       "lines (- for standard output)")
    serve.add_argument("--journal-size", type=_positive_int, default=10_000, metavar="N",
                       help="events the journal keeps in memory for the admin API "
                       "(default 10000)")
    serve.add_argument("--admin", action="store_true",
                       help="answer the admin API (HTTP, JSON) under /__admin on the same port")
    serve.add_argument("--admin-allow", action="append", type=_network, metavar="CIDR",
                       help="networks allowed to use the admin API, instead of the loopback "
                       "default (repeatable)")
    serve.set_defaults(run=_serve)
    return parser


def _report(errors: list[ScenarioError], out: TextIO) -> None:
    for error in errors:
        print(error.format_text(), file=out)
        print(file=out)


def _check(args: argparse.Namespace) -> int:
    loaded, errors, count = load_paths(args.paths)
    errors = sorted(set(errors), key=ScenarioError.sort_key)
    if args.format == "json":
        json.dump({"files": count, "errors": [e.as_dict() for e in errors]}, sys.stdout,
                  indent=2, ensure_ascii=False)
        print()
    elif args.format == "github":
        for error in errors:
            print(error.format_github())
    else:
        _report(errors, sys.stdout)
        files = f"{count} file" + ("" if count == 1 else "s")
        if errors:
            bad = len({e.file for e in errors})
            print(f"{len(errors)} error{'' if len(errors) == 1 else 's'} in {bad} of {files}")
        else:
            routes = sum(len(one.ir.get("routes", [])) for one in loaded)
            tests = sum(len(one.ir.get("tests", [])) for one in loaded)
            summary = f"ok: {files}, {routes} route{'' if routes == 1 else 's'}"
            if tests:
                summary += f", {tests} test{'' if tests == 1 else 's'}"
            print(summary)
    return EXIT_INVALID if errors else EXIT_OK


def _load_one(name: str) -> Loaded | None:
    if Path(name).is_dir():
        raise UsageError(f"{name}: a directory; this command takes one scenario file")
    (path,) = scenario_files([name])
    loaded, errors = load_file(Path(path))
    if loaded is None:
        _report(errors, sys.stderr)
    return loaded


def _compile(args: argparse.Namespace) -> int:
    loaded = _load_one(args.file)
    if loaded is None:
        return EXIT_INVALID
    document: object = loaded.ir
    if args.source_map:
        spans = {p: [s.line, s.col, s.end_line, s.end_col] for p, s in loaded.source_map.items()}
        document = {"ir": loaded.ir, "sourceMap": spans}
    json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from .serve import serve_files

    return serve_files(args.paths, host=args.host, port=args.port, certfile=args.certfile,
                       keyfile=args.keyfile, quiet=args.quiet,
                       max_connections=args.max_connections, open_timeout=args.open_timeout,
                       journal_file=args.journal, journal_size=args.journal_size,
                       admin=args.admin, admin_allow=args.admin_allow)


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a network (CIDR, e.g. 10.0.0.0/8): {text!r}"
                                         ) from None


def _test(args: argparse.Namespace) -> int:
    from ..testing.runner import RunOptions
    from .test import run_test_command

    options = RunOptions(target=args.target, jobs=args.jobs, timeout=args.timeout,
                         overrides=dict(args.set), insecure=args.insecure)
    return run_test_command(args.paths, options, junit=args.junit, name_filter=args.filter,
                            github=args.format == "github")


def _assignment(text: str) -> tuple[str, Any]:
    name, equals, value = text.partition("=")
    if not equals or not name_regex().fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value  # not JSON: the text itself


def _ws_url(text: str) -> str:
    if not text.startswith(("ws://", "wss://")):
        raise argparse.ArgumentTypeError(f"must be a ws:// or wss:// URL, not {text!r}")
    from ..testing.conversation import check_target

    try:
        return check_target(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _convert(args: argparse.Namespace) -> int:
    from ..errors import EmitError
    from ..language.emit import emit_mock, emit_yaml
    from ..language.validate import error_at

    loaded = _load_one(args.file)
    if loaded is None:
        return EXIT_INVALID
    try:
        text = emit_yaml(loaded.ir) if args.to == "yaml" else emit_mock(loaded.ir)
    except EmitError as err:  # valid, but with no spelling in the other language
        _report([error_at(loaded, err.pointer, f"cannot convert to .{args.to}: "
                          f"{err.message}", "keep this scenario in its own spelling, or "
                          "write this part another way")], sys.stderr)
        return EXIT_INVALID
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as err:
            raise UsageError(f"{args.output}: {err.strerror or err}") from None
    else:
        sys.stdout.write(text)
    return EXIT_OK
