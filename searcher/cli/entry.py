"""The `searcher` command: parses arguments, calls the stages, and turns errors into one line and an exit code.

Exit codes: 0 done, 1 a run failed (see the message), 2 bad input (study file, data, teacher, flags), 130 Ctrl-C.
Heavy imports (torch, transformers, optuna) happen inside the commands so `searcher --help` is instant.
"""

from __future__ import annotations

import argparse
import keyword
import logging
import os
import signal
import sys
import threading
from typing import Optional, Sequence

from searcher import redact
from searcher.errors import (ConfigError, DataError, RecipeError, RefusedError, SearcherError, StudentError,
                             StudyError, TeacherError)

BAD_INPUT = (ConfigError, DataError, TeacherError, StudentError, StudyError, RefusedError, RecipeError)


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more, got {value}")
    return value


def _positive(text: str) -> int:
    return _whole(text, 1)


def _trial_number(text: str) -> int:
    return _whole(text, 0)  # trial numbers start at 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _study_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", metavar="STUDY.toml", help="the study file (see studies/)")
    p.add_argument("--storage", help="Optuna storage URL (default: $SEARCHER_STORAGE, [study] storage, or SQLite "
                                     "beside the study file)")


def _selection(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--trial", type=_trial_number, metavar="N", help="one trial by number")
    g.add_argument("--best", action="store_true", help="the best trial (default)")
    g.add_argument("--top", type=_positive, metavar="K", help="the K best trials")
    g.add_argument("--pareto", action="store_true", help="the Pareto front (multi-objective studies)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="searcher", description="Distill a teacher into the best small student "
                                     "with Optuna; publish it with a model card.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only results and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("optimize", help="run or resume a study")
    _study_arg(p)
    p.add_argument("--n-trials", type=_positive, metavar="N", help="run at most N trials in this process (the study's "
                                                              "n_trials still caps the total over all workers)")
    p.add_argument("--timeout", type=_seconds, metavar="S", help="stop starting trials after S seconds")
    p.add_argument("--no-wait", action="store_true", help="exit as soon as the study's n_trials are taken, without "
                                                         "waiting for other workers' running trials")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per trial)")
    p.add_argument("--devices", metavar="all|0,2,3", help="start and supervise one worker per GPU named (all: every "
                                                         "visible GPU), each on its own device")
    p.add_argument("--workers-per-device", type=int, metavar="N", help="N workers on each device of --devices; "
                                                                      "without --devices, N workers on the study's "
                                                                      "device; each gets cores / workers threads")
    p.add_argument("--num-threads", type=_positive, metavar="N", help="torch threads of this process, where the "
                                                                      "study sets no [train] num_threads")
    # one of the workers --devices starts: no leaderboard and no publishing at its end (the supervisor does them once)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)

    p = sub.add_parser("best", help="print the leaderboard")
    _study_arg(p)
    p.add_argument("--top", type=_positive, default=10, metavar="K", help="how many trials (default 10)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("card", help="write model card folders (card + model + record) for chosen trials")
    _study_arg(p)
    _selection(p)
    p.add_argument("--out", metavar="DIR", help="where to write (default: <output_dir>/cards)")
    p.add_argument("--template", metavar="FILE", help="a Jinja card template (default: [card] template or ours)")
    p.add_argument("--force", action="store_true", help="replace an existing folder even if it holds other files")

    p = sub.add_parser("push", help="publish chosen trials to the Hugging Face Hub")
    _study_arg(p)
    _selection(p)
    p.add_argument("--repo-id", metavar="TEMPLATE", help="e.g. acme/{study}-L{layers}-H{hidden} (default: [hub])")
    vis = p.add_mutually_exclusive_group()
    vis.add_argument("--private", dest="private", action="store_true", default=None, help="private repos (default)")
    vis.add_argument("--public", dest="private", action="store_false", help="public repos")
    p.add_argument("--dry-run", action="store_true", help="show what would be uploaded; contact nobody")

    p = sub.add_parser("dashboard", help="start optuna-dashboard on the study's storage")
    _study_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback only)")
    p.add_argument("--port", type=int, default=8080)

    p = sub.add_parser("space", help="print the search space as JSON for `optuna ask --search-space`")
    p.add_argument("study", metavar="STUDY.toml")

    p = sub.add_parser("import", help="print published recipes (model cards, Hub ids, searcher_trial.json, "
                                      "finished studies) as [[enqueue]] blocks")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="a card file or folder, a Hub id (owner/name), a searcher_trial.json, or STORAGE_URL::STUDY")
    p.add_argument("--append", metavar="STUDY.toml", help="also add the blocks to this study file (keeping its "
                                                          "bytes); values it cannot take are reported, not clipped")

    p = sub.add_parser("run-trial", help="train trials created by `optuna ask` and tell their results (several "
                                         "numbers of one student shape train together, as a cohort)")
    _study_arg(p)
    p.add_argument("--trial-number", type=_trial_number, required=True, nargs="+", metavar="N")
    return parser


def _sigterm_as_ctrl_c(signum, frame):
    raise KeyboardInterrupt


def _terminate_like_ctrl_c() -> None:
    """SIGTERM (Slurm, Kubernetes, `timeout`) stops a run as Ctrl-C does: the running trial is queued again at
    once, instead of sitting RUNNING until its heartbeat expires. An ignored SIGTERM stays ignored."""
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)


def _redeliver_lost_interrupts() -> None:
    """A Ctrl-C (or SIGTERM) that lands while Python runs a weakref callback or a __del__ is raised there, where
    Python swallows it ("Exception ignored in ...", a traceback on stderr) and the run goes on. Deliver it again to
    the main flow instead, so it stops the run as any other Ctrl-C (seen: a worker's traceback when its supervisor
    stopped it). Other unraisable errors keep Python's own report."""
    previous = sys.unraisablehook
    if getattr(previous, "redelivers_interrupts", False):
        return

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            import _thread

            ours = signal.getsignal(signal.SIGTERM) is _sigterm_as_ctrl_c
            # from a thread, a moment later: raised now, it would land in this hook (and be swallowed again); should
            # it land in another callback, this hook sends it once more
            threading.Timer(0.05, _thread.interrupt_main, (signal.SIGTERM if ours else signal.SIGINT,)).start()
            return
        previous(unraisable)

    hook.redelivers_interrupts = True
    sys.unraisablehook = hook


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _known_secrets()
    _logging(args.quiet)
    if threading.current_thread() is threading.main_thread():
        _terminate_like_ctrl_c()
        _redeliver_lost_interrupts()
    try:
        from searcher.cli import commands

        name = args.command.replace("-", "_")
        return getattr(commands, name + "_" if keyword.iskeyword(name) else name)(args) or 0
    except BAD_INPUT as e:
        print(f"searcher: error: {redact.text(str(e))}", file=sys.stderr)
        return 2
    except SearcherError as e:
        print(f"searcher: error: {redact.text(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command in ("optimize", "run-trial"):
            print("searcher: interrupted; the running trial was marked failed and queued again: run the same "
                  "command to resume", file=sys.stderr)
        else:
            print("searcher: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `searcher best --json | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 0


def _known_secrets() -> None:
    """Register the Hub token this process may send (HF_TOKEN, or the login cache's token file where `hf auth
    login` put it), so that no message shows it, whoever wrote the message. huggingface_hub.get_token() is not called
    here: it may refresh an OAuth token or exchange an OIDC one over the network, which `searcher best` must not do
    (searcher.hub registers the token it gets from it before it pushes)."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        redact.secret(os.environ.get(var))
    try:
        from huggingface_hub import constants  # the paths alone: the package itself is imported lazily

        with open(constants.HF_TOKEN_PATH, encoding="utf-8") as f:
            redact.secret(f.read())
    except (ImportError, OSError, UnicodeDecodeError):
        pass  # no login cache (or no huggingface_hub): then nothing of it can be sent either


def _logging(quiet: bool) -> None:
    """searcher's own messages go to stderr as plain lines (results go to stdout)."""
    logger = logging.getLogger("searcher")
    for handler in [h for h in logger.handlers if getattr(h, "_searcher_cli", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(redact.Filter())  # every searcher.* record passes this handler (propagate is off below)
    handler._searcher_cli = True
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
