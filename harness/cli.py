"""The `phee` command line."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness.components import ComponentError, manager


def _cmd_fetch(args: argparse.Namespace) -> int:
    # Each component prints its own lines as it goes (start, heartbeats, end); then a total.
    results = manager.fetch(args.names)
    downloaded = sum(1 for res in results if res.downloaded)
    total = sum(res.seconds for res in results)
    print(f"fetch: {downloaded} downloaded, {len(results) - downloaded} cached, {total:.1f} s")
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    for run in manager.start(args.names):
        ends = " ".join(f"{k}={v}" for k, v in sorted(run.endpoints.items()))
        head = f"{run.name:<14} {run.version:<24} pid {run.pid:<7}"
        print(f"{head} ready in {run.ready_s:5.1f} s  {ends}")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    stopped = manager.stop(args.names)
    for run in stopped:
        print(f"stopped {run.name} (pid {run.pid})")
    if not stopped:
        print("nothing to stop")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    print("cached:")
    for entry in manager.cache_entries():
        mark = "yes" if entry.cached else "no"
        size = f"{entry.size_mb:8.1f} MB"
        print(f"  {entry.name:<14} {entry.version:<24} {mark:<4} {size}  {entry.path}")
    print("running:")
    runs = manager.running()
    for run in runs:
        state = "alive" if run.alive else "DEAD"
        ends = " ".join(f"{k}={v}" for k, v in sorted(run.endpoints.items()))
        print(f"  {run.name:<14} {run.version:<24} pid {run.pid:<7} {state:<5} {ends}")
    if not runs:
        print("  (none)")
    return 0


def _cmd_site_up(args: argparse.Namespace) -> int:
    from harness import site

    if args.engines < 1 or args.payments < 0:
        print("phee: --engines must be at least 1 and --payments not negative", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="phee-site-"))
    try:
        return site.up(workdir, args.engines, args.payments, args.duration)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"data and logs kept in {workdir}")


def _cmd_licences(args: argparse.Namespace) -> int:
    from harness import licences

    return licences.main(Path(args.out) if args.out else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phee", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    comps = sub.add_parser("components", help="fetch, start, stop and list the real components")
    csub = comps.add_subparsers(dest="action", required=True)
    for action, func, helptext in (
        ("fetch", _cmd_fetch, "download pinned versions into the cache (once)"),
        ("start", _cmd_start, "start on 127.0.0.1 with free ports, detached"),
        ("stop", _cmd_stop, "stop what `start` started (all by default)"),
    ):
        p = csub.add_parser(action, help=helptext)
        p.add_argument("names", nargs="*", help="component names (default: all)")
        p.set_defaults(func=func)
    p = csub.add_parser("status", help="what is cached (with versions) and what runs")
    p.set_defaults(func=_cmd_status)

    from phee.fspiop import cli as fspiop_cli

    fspiop_cli.add_parser(sub)

    p = sub.add_parser(
        "licences",
        help="every Python package and fetched artifact with its licence; fails on a refused one",
    )
    p.add_argument(
        "--out", help="where to write the table (default: <cache>/licences/inventory.tsv)"
    )
    p.set_defaults(func=_cmd_licences)

    site = sub.add_parser("site", help="the local multi-engine site")
    ssub = site.add_subparsers(dest="action", required=True)
    p = ssub.add_parser("up", help="start the site, prove it works, run until Ctrl-C")
    p.add_argument("--engines", type=int, default=2, help="number of engines (default 2)")
    p.add_argument("--payments", type=int, default=20, help="sample payments to send (default 20)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--keep", action="store_true", help="keep data and logs afterwards")
    p.set_defaults(func=_cmd_site_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Line by line even into a pipe (CI logs), so a slow cold fetch shows its progress.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    # `kill -USR1 <pid>` prints every thread's stack: where a hung start or stop waits (only
    # when stderr is a real file: called in-process under a capture, it has no descriptor)
    with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError):
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    args = build_parser().parse_args(argv)
    if args.command == "fspiop":
        from phee.fspiop import cli as fspiop_cli

        return fspiop_cli.run(args)
    try:
        return int(args.func(args))
    except ComponentError as err:
        print(f"phee: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
