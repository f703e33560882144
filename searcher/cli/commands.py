"""One function per CLI command: load the study file, call the stages, print results. No argument parsing here."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from searcher import timing
from searcher.config import load_study

log = logging.getLogger("searcher")


def _quiet_libraries() -> None:
    import optuna

    # our one line per trial says why a trial failed; optuna would add a full traceback for each
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars on every student would bury results


# ---------------------------------------------------------------------------------------------------------------


def optimize(args) -> int:
    if args.devices is not None or args.workers_per_device is not None:
        return _optimize_with_workers(args)
    from searcher.run import optimize as engine
    from searcher.train import runtime
    from searcher.records import storage
    from searcher.search.prepare import prepare
    from searcher.cli.progress import Progress
    from searcher.records.trial import own_trials
    import torch

    began = time.monotonic()
    timing.reset()
    config = _checked_study(args)
    run = runtime.from_config(config.train, args.num_threads)
    # every input check happens here, before the study is touched; changed data before the teacher works on it
    prepared = prepare(config, run, check_data=lambda c, task: engine.check_data(c, task, args.storage))
    study = engine.open_study(prepared, args.storage)
    url = config.storage_url(args.storage)
    log.info("study %r in %s: %d trials so far; device %s, AMP %s, %d torch threads", config.study.name,
             storage.redact(url), len(own_trials(study)), run.device, run.amp, torch.get_num_threads())
    # the objectives as prepared resolved them (a regression study's default is pearson, not accuracy)
    progress = Progress(prepared.config, enabled=not args.no_progress and sys.stderr.isatty(),
                        total=args.n_trials or config.study.n_trials)
    report = _reporter(config, study, url)
    hooks = [progress.trial_done] + _after_trial_hooks(prepared) + ([report.trial_done] if report else [])
    on_epoch = progress.epoch_done if report is None else _both(progress.epoch_done, report.epoch)
    started = time.monotonic()
    try:
        summary = engine.run(prepared, study, n_trials=args.n_trials, timeout=args.timeout or config.study.timeout,
                             after_trial=hooks, on_epoch=on_epoch, wait_for_others=not args.no_wait)
    finally:
        progress.close()
        if report is not None:
            report.close()
    log.info("stopped: %s (%d trial(s) in %.0fs)", summary.stopped_because, len(summary.ran),
             time.monotonic() - started)
    log.info("time by phase (this run, %d trial(s), %.0fs in all): %s", len(summary.ran), time.monotonic() - began,
             timing.summary(time.monotonic() - began))
    if args.worker:
        return 0  # one of several workers: their supervisor shows the leaderboard and publishes, once
    _after_study(config, study)
    print()
    print_leaderboard(study, config, top=5)
    _report_best(study, prepared.config)
    return 0


def _checked_study(args):
    """The study file, and every check that needs neither the data nor the teacher: nothing is written yet."""
    from searcher import trackers
    from searcher.records import storage
    from searcher.search import warmstart

    config = load_study(args.study)
    trackers.check_installed(config)  # a missing tracker package must not surface after the teacher's fine-tune
    _quiet_libraries()
    if config.hub.push != "none":
        from searcher import hub

        hub.check_before_study(config)  # a missing token must not surface after hours of training
    storage.check_writable(config.storage_url(args.storage))  # before the data and the teacher are prepared
    warmstart.check(config, config.storage_url(args.storage))  # so are the warm_start sources
    return config


def _optimize_with_workers(args) -> int:
    """`--devices` / `--workers-per-device`: start the workers (each a `searcher optimize --worker` of its own,
    with the guarantees of a worker started by hand), show their lines as one, and show the leaderboard and publish
    once they have all ended."""
    from searcher.errors import ConfigError, SearcherError, StudyError
    from searcher.records import storage
    from searcher.run import devices, supervise

    if args.n_trials is not None:
        raise ConfigError("--n-trials counts one process's trials; the workers of --devices/--workers-per-device run "
                          "the study's [study] n_trials together: drop --n-trials")
    config = load_study(args.study)
    workers = devices.plan(config, args.devices, args.workers_per_device)
    _checked_study(args)
    began = time.monotonic()
    outcome = supervise.run([supervise.Spec(w.label, _worker_argv(args, w), {**os.environ, **w.env})
                             for w in workers])
    if outcome.interrupted:
        print("searcher: interrupted; the workers' running trials were marked failed and queued again: run the same "
              "command to resume", file=sys.stderr)
        return 130
    ended = {w.label: outcome.codes[w.label] for w in workers}  # in the order they were started
    failed = {label: code for label, code in ended.items() if code}
    log.info("workers ended in %.0fs: %s", time.monotonic() - began,
             ", ".join(f"{label} {supervise.describe(code) if code else 'done'}" for label, code in ended.items()))
    if len(failed) < len(workers):  # the study ran: its leaderboard, and what the study file asks after it
        study = storage.load(config, args.storage)
        _after_study(config, study)
        print()
        print_leaderboard(study, config, top=5)
        _report_best(study, config)
    if not failed:
        return 0
    what = "; ".join(f"{label} {supervise.describe(code)}" for label, code in failed.items())
    if all(code == 2 for code in failed.values()):
        raise StudyError(f"{len(failed)} of {len(workers)} workers stopped on bad input ({what}); see their lines "
                         f"above")
    raise SearcherError(f"{len(failed)} of {len(workers)} workers failed ({what}); see their lines above, and run "
                        f"the same command to finish the study")


def _worker_argv(args, worker) -> list[str]:
    """One worker's command line: the user's optimize flags that apply to each worker, and its threads."""
    argv = [sys.executable, "-m", "searcher.cli"] + (["-q"] if args.quiet else []) + [
        "optimize", args.study, "--no-progress", "--worker"]
    if args.storage:
        argv += ["--storage", args.storage]
    if args.timeout:
        argv += ["--timeout", repr(args.timeout)]
    if args.no_wait:
        argv.append("--no-wait")
    if worker.num_threads:
        argv += ["--num-threads", str(worker.num_threads)]
    return argv


def _report_best(study, config) -> None:
    """Where the best student is (in a multi-objective study: on the Pareto front, by records.ranked's rule)."""
    from searcher import records

    best = records.best(study)
    record = records.TrialRecord.from_trial(best) if best is not None else None
    if record is not None and record.kept:
        names = study.metric_names or config.study.objectives  # what the study records, as the leaderboard reads
        values = ", ".join(f"{name} {value:.4f}" for name, value in zip(names, record.values))
        print(f"\nbest student: trial {record.number}, {values}: {record.model_dir}")


def _after_trial_hooks(prepared):
    """Dashboard records (note, figure, card artifacts) after each trial."""
    from searcher.card import dashboard

    return [dashboard.after_trial_hook(prepared.config)]


def _reporter(config, study, url: str):
    """The study's trackers ([report] to), opened: they are told of the finished trials they lack first."""
    from searcher import trackers

    report = trackers.reporter(config)
    if report is not None:
        report.start(study, url)
    return report


def _both(first, second):
    def call(trial, result) -> None:
        first(trial, result)
        second(trial, result)

    return call


def _after_study(config, study) -> None:
    """Publishing after the study, when the study file asks for it ([hub] push)."""
    if config.hub.push == "none":
        return
    from searcher import hub

    hub.push_after_study(config, study)


def best(args) -> int:
    from searcher.records import storage

    config = load_study(args.study)
    _quiet_libraries()
    study = storage.load(config, args.storage)
    if args.json:
        from searcher.cli.leaderboard import rows

        print(json.dumps(rows(study, config, args.top), indent=1))
    else:
        print_leaderboard(study, config, top=args.top)
    return 0


def print_leaderboard(study, config, top: int) -> None:
    from searcher.cli.leaderboard import render

    print(render(study, config, top))


def space(args) -> int:
    """The study's space as Optuna sees it: with [data] task = "auto" the kind is inferred from the data first (a
    regression study searches no temperature, and `optuna ask` must not create trials with one)."""
    from searcher.search import space as sp

    config = load_study(args.study)
    if config.data.task == "auto":
        from searcher.data.loading import load_task
        from searcher.search.prepare import with_task

        config = with_task(config, load_task(config).kind.name)
    print(sp.search_space_json(config))
    return 0


def import_(args) -> int:
    """`searcher import`: every source must give a recipe (a source that gives none is the error, nothing is
    added); with --append the blocks go into the study file and what it cannot take is reported, not clipped."""
    from searcher import recipes

    config = load_study(args.append) if args.append else None
    found = [recipe for source in args.sources for recipe in recipes.read(source)]
    text = recipes.to_toml(found, config)
    print(text, end="")
    if config is None:
        return 0
    for line in recipes.conflicts(found, config):
        log.warning("not imported: %s", line)
    blocks = text.count("\n[[enqueue]]\n")
    if not blocks:
        raise recipes.RecipeError(f"nothing to add to {config.path}: no value from {', '.join(args.sources)} fits "
                                  f"the study (see the lines above); widen the ranges they name and run again")
    recipes.append(config.path, text)
    log.info("added %d [[enqueue]] block(s) to %s", blocks, config.path)
    return 0


def run_trial(args) -> int:
    from searcher.run import optimize as engine
    from searcher.train import runtime
    from searcher import trackers
    from searcher.run.asktell import run_asked_trials
    from searcher.search.prepare import prepare

    config = load_study(args.study)
    trackers.check_installed(config)
    _quiet_libraries()
    # changed data is refused as soon as it is read, before the teacher labels it (as `optimize` does)
    prepared = prepare(config, runtime.from_config(config.train),
                       check_data=lambda c, task: engine.check_data(c, task, args.storage))
    report = trackers.reporter(config)  # opened on the study below; the whole run is sent when the trial ends
    hooks = _after_trial_hooks(prepared) + ([_opened(report, config.storage_url(args.storage))] if report else [])
    try:
        done = run_asked_trials(prepared, args.trial_number, args.storage, after_trial=hooks)
    finally:
        if report is not None:
            report.close()
    from searcher.cli.progress import trial_line

    for frozen in done:
        print(trial_line(frozen, prepared.config))
    return 0 if all(frozen.state.name != "FAIL" for frozen in done) else 1


def _opened(report, url: str):
    def hook(study, trial) -> None:
        if report.study is None:
            report.start(study, url)  # fills in every finished trial, this one included
        else:
            report.trial_done(study, trial)

    return hook


def card(args) -> int:
    from searcher.card import folders
    from searcher.records import storage

    config = load_study(args.study)
    _quiet_libraries()
    study = storage.load(config, args.storage)
    for folder in folders.export(study, config, trial=args.trial, top=args.top, pareto_front=args.pareto,
                                 out=args.out, template=args.template, force=args.force):
        print(folder)
    return 0


def push(args) -> int:
    from searcher import hub
    from searcher.records import storage

    config = load_study(args.study)
    _quiet_libraries()
    if not args.dry_run:
        storage.check_writable(config.storage_url(args.storage))  # the push is recorded in the study
    study = storage.load(config, args.storage)
    hub.push(study, config, trial=args.trial, top=args.top, pareto_front=args.pareto, repo_id=args.repo_id,
             private=args.private, dry_run=args.dry_run)
    return 0


def dashboard(args) -> int:
    from searcher.card import dashboard as dash

    config = load_study(args.study)
    return dash.serve(config, args.storage, args.host, args.port)

