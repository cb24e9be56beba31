"""`python -m judge.human serve ...` (the rating server) and `python -m judge.human export ...` (the results).

Exit status (docs/cli.md): 0 done; 1 a failure while running (port taken, disk full, database error); 2 bad
input or usage (also a store another server holds); 130 stopped by Ctrl-C; 143 stopped by SIGTERM. Errors
are one line: `error: <flag or file>: <problem>` (`plumbing.command.run_cli`). Each command imports its
own modules when it runs, under the signal handlers; the server needs evalkit (numpy, scipy) only to read
--pairs.
"""
from __future__ import annotations

import argparse
import socket
import sqlite3
import sys
from datetime import datetime

from plumbing.command import ArgumentParser, run_cli
from plumbing.errors import EXIT_FAILURE, CommandError

from judge.errors import JudgeError

MAX_BOOTSTRAP = 10_000  # resamples of `export --bootstrap`: memory grows with resamples x rated answers


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m judge.human", description="Track C: blinded rating by clinicians.")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the rating page; prints one link per rater")
    s.add_argument("--pairs", action="append", metavar="FILE",
                   help="JSONL {id, model, prompt, reference, response}, one file per system (baseline first); "
                        "needed when the store is created")
    s.add_argument("--store", required=True, metavar="PATH", help="SQLite ratings store (created if absent)")
    s.add_argument("--raters", required=True, metavar="NAMES", help="comma-separated rater names, e.g. alice,bob,carol")
    s.add_argument("--per-rater", type=int, default=None, metavar="N",
                   help="question ids per rater, spread evenly over the raters (default: every id for every rater)")
    s.add_argument("--pairwise", action="store_true", default=None,
                   help="show two systems' answers as A and B and ask which is better")
    s.add_argument("--with-reference", action="store_true", default=None, help="show the physician's reference answer")
    s.add_argument("--seed", type=int, default=None, help="study seed for queues and sides (default 0)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    s.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    s.add_argument("--new-links", default=None, metavar="NAMES",
                   help="issue new links for these raters (comma-separated names that are in --raters, or 'all'); "
                        "their old links stop working")
    s.add_argument("--access-log", action="store_true", help="log each request to stderr (tokens masked)")
    e = sub.add_parser("export", help="write ratings, Table C and agreement statistics")
    e.add_argument("--store", required=True, metavar="PATH", help="the ratings store")
    e.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    e.add_argument("--judgments", default=None, metavar="PATH", help="the LLM judge's judgments.jsonl")
    e.add_argument("--scores", default=None, metavar="PATH", help="evalkit's scores.jsonl (Track A)")
    e.add_argument("--grounding", default=None, metavar="PATH", help="grounding.jsonl (numeric fields per item)")
    e.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    e.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                   help=f"bootstrap resamples (default 2000, at most {MAX_BOOTSTRAP:,})")
    return parser


def _base_url(host: str, port: int) -> str:
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _bind(host: str, port: int, access_log: bool):
    """The listening server, before anything is written; a port that cannot be had is exit status 1."""
    from judge.human.server import RatingServer

    if not 0 <= port <= 65535:
        raise JudgeError(f"--port: {port} is not a port number")
    try:
        return RatingServer(host, port, access_log=access_log)
    except (OSError, OverflowError) as exc:
        raise JudgeError(f"--port: cannot listen on {host}:{port} ({getattr(exc, 'strerror', None) or exc})",
                         exit_code=EXIT_FAILURE) from None


def serve(args) -> int:
    """Open (or create) the study, print the links and serve until a signal stops the server."""
    from judge.human.app import RatingApp
    from judge.human.auth import Gate
    from judge.human.study import open_study, parse_raters

    raters = parse_raters(args.raters)
    new_links = None
    if args.new_links is not None:
        new_links = raters if args.new_links == "all" else parse_raters(args.new_links, "--new-links")
    server = _bind(args.host, args.port, args.access_log)
    study = None
    try:
        study = open_study(args.store, args.pairs, raters, args.per_rater, args.pairwise, args.with_reference,
                           args.seed, new_links, exclusive=True)
        hashes = {r["name"]: r["token_sha256"] for r in study.store.raters() if r["name"] in raters}
        log = lambda text: print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)  # noqa: E731
        server.app = RatingApp(study.store, Gate(hashes), log)
        _print_links(study, args, raters, server.server_address[1])
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()  # first: no request is served once the store is closed
        if study is not None:
            study.close()  # the store (a rating being written is finished first), then its lock
    return 0


def _print_links(study, args, raters: list[str], port: int) -> None:
    s = study.settings
    base = _base_url(args.host, port)
    queues = {name: study.store.queue(name) for name in raters}
    print(f"Track C rating server on {base} ({s['mode']}, {len(s['systems'])} systems, store {args.store})")
    for name in raters:
        q = queues[name]
        progress = f"{sum(row['revisions'] > 0 for row in q)} of {len(q)} rated"
        token = study.links[name]
        link = f"{base}/r/{token}/" if token else "link issued at an earlier start still works (--new-links to replace it)"
        print(f"  {name}: {link}  ({progress})")
    others = [r["name"] for r in study.store.raters() if r["name"] not in raters]
    if others:
        print(f"  not served this time (kept in the store): {', '.join(others)}")
    ids = {row["record_id"] for q in queues.values() for row in q}
    shared = sum(1 for i in ids if sum(any(row["record_id"] == i for row in q) for q in queues.values()) >= 2)
    if len(raters) >= 2 and shared == 0:
        print("warning: no question is given to two raters, so agreement between raters cannot be measured; "
              "raise --per-rater", file=sys.stderr)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone on the network who sees a link can rate as that rater, "
              "and plain HTTP can be read on the way; use a trusted network (docs/track-c.md)", file=sys.stderr)
    print("Send each rater their own link (it is their password). Ctrl-C stops the server; ratings are saved "
          "as they are given.", flush=True)


def run_export(args) -> int:
    """Write the export files; prints one summary line."""
    from judge.human.export import FILES, export

    if not 1 <= args.bootstrap <= MAX_BOOTSTRAP:
        raise JudgeError(f"--bootstrap: must be from 1 to {MAX_BOOTSTRAP:,}, got {args.bootstrap}")
    summary = export(args.store, args.out, args.judgments, args.scores, args.grounding, args.seed, args.bootstrap)
    print(f"{summary['n_ratings']} final ratings ({summary['n_revisions']} submissions) from "
          f"{len(summary['raters'])} raters; wrote {', '.join(FILES)} to {args.out}")
    return 0


def _database_errors(command):
    """`command` with SQLite's errors as one line naming --store (exit status 1)."""
    def body() -> int:
        try:
            return command()
        except sqlite3.Error as exc:
            raise JudgeError(f"--store: database error ({exc})", exit_code=EXIT_FAILURE) from None
    return body


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        command = lambda: serve(args)  # noqa: E731
        stopped = "interrupted; the server stopped, every rating given is saved in the store"
    else:
        command = lambda: run_export(args)  # noqa: E731
        stopped = "interrupted; the store is unchanged, rerun the export"
    return run_cli(_database_errors(command), handled=(CommandError, OSError), interrupted=stopped)
