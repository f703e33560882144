"""GPU throughput: a searcher trial (the real distill.train) against a bare AMP loop, at batch 1024, and peak memory;
and cohorts (searcher.train.cohort) against the same trials one at a time.

    python benchmarks/gpu.py [--data ../shared/data] [--out benchmarks/results]
    python benchmarks/gpu.py --quick        # CPU smoke test: tiny model, few steps, results in /tmp/searcher-gpu-quick

Cohorts, measured on every machine (on a CPU: a cohort of 8 L1/H64 students at batch 32 against the same 8 trials
one after another, target: no more time; on a GPU also L2/H128 and L4/H256 at batch 32 and 1024 in cohorts of 8,
32 and 64, in aggregate trial-samples/s, targets 1,000,000 (L4/H256, batch 1024) and 200,000 (batch 32)). Each side
is one epoch of distill.train per trial (or Cohort.epochs for all), evaluation included, interleaved rounds, medians.

Both sides train the same student (BERT L4/H256, random init) on the same SST-2 rows (synthetic rows of SST-2's
lengths without --data) in the same batches, with the same precomputed teacher logits and AMP mode (bf16 where the
GPU supports it, else fp16 with a grad scaler), interleaved a few times so drift hits both alike. The bare loop is
forward, loss, backward, clip, step, with no evaluation, no host sync and no schedule; the searcher side is
distill.train with one epoch over the rows and an evaluation of a small validation split at the end (its
EpochResult.seconds counts both). Reports samples/s of each, their ratio, and peak CUDA memory (max_memory_allocated)
per trial. Without a CUDA device it prints "no CUDA device" and writes a results file that says so.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL = {"layers": 4, "hidden": 256, "batch": 1024, "rows": 65536, "max_length": 64, "rounds": 3, "eval_rows": 1024}
QUICK = {"layers": 1, "hidden": 64, "batch": 32, "rows": 256, "max_length": 32, "rounds": 2, "eval_rows": 64}


def sst2_lengths(data: Path, n: int, max_length: int, rng: np.random.Generator) -> np.ndarray:
    """Token lengths of SST-2 sentences (whitespace words + [CLS]/[SEP], a close proxy for WordPiece on SST-2)."""
    path = data / "sst2" / "train.tsv"
    if path.is_file():
        with open(path, newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        lengths = np.array([len(r[0].split()) + 2 for r in rows])
    else:
        lengths = rng.geometric(1 / 11, size=10_000) + 3
    return np.clip(rng.choice(lengths, size=n), 3, max_length)


def encoded(n: int, max_length: int, vocab: int, data: Path, seed: int):
    from searcher.data.tokens import Encoded

    rng = np.random.default_rng(seed)
    lengths = sst2_lengths(data, n, max_length, rng)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(1000, vocab, size=int(offsets[-1])).astype(np.int32)
    return Encoded(ids, np.zeros_like(ids, dtype=np.int8), offsets, rng.integers(0, 2, size=n).astype(np.int64), 0)


def student(layers: int, hidden: int, vocab: int, seed: int = 0):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden, num_labels=2)
    return BertForSequenceClassification(cfg)


def sync(run) -> None:
    import torch

    if run.is_cuda:
        torch.cuda.synchronize()


def bare_loop(model, enc, logits: np.ndarray, batch_size: int, run, seed: int) -> float:
    """The textbook AMP loop over the same batches: seconds for one pass over the rows."""
    import torch

    from searcher.train import distill
    from searcher.train.batching import collate, epoch_batches

    model.to(run.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = run.grad_scaler()
    labels, targets = torch.from_numpy(enc.labels), torch.from_numpy(logits)
    batches = epoch_batches(enc.lengths, batch_size, np.random.default_rng(seed), True)
    sync(run)
    started = time.perf_counter()
    for batch in batches:
        inputs = {k: v.to(run.device, non_blocking=True) for k, v in collate(enc, batch, run.is_cuda).items()}
        y, t = labels[batch].to(run.device, non_blocking=True), targets[batch].to(run.device, non_blocking=True)
        with run.autocast():
            out = model(**inputs).logits
        loss = distill.kd_loss(out.float(), t, y, 0.5, 2.0) / len(batch)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    sync(run)
    return time.perf_counter() - started


def searcher_trial(model, enc, logits, val, val_logits, batch_size: int, run, seed: int) -> tuple[float, float]:
    """distill.train for one epoch: (seconds, peak memory MB or nan)."""
    from searcher.train import distill
    from searcher.hyperparams import Hyperparams

    hp = Hyperparams(learning_rate=1e-4, batch_size=batch_size, temperature=2.0, alpha=0.5, epochs=1, seed=seed)
    sync(run)
    started = time.perf_counter()
    (result,) = distill.train(model, enc, logits, val, val_logits, hp, run)
    sync(run)
    seconds = time.perf_counter() - started
    return seconds, result.peak_memory_mb if result.peak_memory_mb is not None else float("nan")


def peak_of(run, fn) -> tuple[float, float]:
    import torch

    if run.is_cuda:
        torch.cuda.reset_peak_memory_stats(run.device)
    seconds = fn()
    peak = torch.cuda.max_memory_allocated(run.device) / 2 ** 20 if run.is_cuda else float("nan")
    return seconds, peak


def measure(sizes: dict, run, data: Path) -> dict:
    from searcher.train import runtime as rt

    vocab = 30522
    enc = encoded(sizes["rows"], sizes["max_length"], vocab, data, seed=0)
    val = encoded(sizes["eval_rows"], sizes["max_length"], vocab, data, seed=1)
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(len(enc), 2)).astype(np.float32)
    val_logits = rng.normal(size=(len(val), 2)).astype(np.float32)
    rows = {"bare": [], "searcher": []}
    peaks = {"bare": [], "searcher": []}
    # warm-up: CUDA context, cuBLAS handles and kernel autotuning happen once, before any timing
    warm = encoded(2 * sizes["batch"], sizes["max_length"], vocab, data, seed=3)
    bare_loop(student(sizes["layers"], sizes["hidden"], vocab), warm, logits[:len(warm)], sizes["batch"], run, 0)
    for r in range(sizes["rounds"]):
        for side in ("bare", "searcher") if r % 2 == 0 else ("searcher", "bare"):
            model = student(sizes["layers"], sizes["hidden"], vocab, seed=r)
            if side == "bare":
                seconds, peak = peak_of(run, lambda m=model: bare_loop(m, enc, logits, sizes["batch"], run, r))
            else:
                seconds, peak = searcher_trial(model, enc, logits, val, val_logits, sizes["batch"], run, r)
            rows[side].append(len(enc) / seconds)
            peaks[side].append(peak)
            del model
            rt.empty_cache(run.device)
            print(f"  round {r + 1}: {side:8s} {len(enc) / seconds:10.0f} samples/s, peak {peak:.0f} MB", flush=True)
    med = {k: float(np.median(v)) for k, v in rows.items()}
    return {"samples_per_s": rows, "median_samples_per_s": med, "ratio_searcher_over_bare": med["searcher"] / med["bare"],
            "peak_memory_mb": peaks, "rows": len(enc), "eval_rows": len(val)}


def cohort_round(layers: int, hidden: int, batch: int, k: int, enc, logits, val, val_logits, run,
                 side: str) -> float:
    """Seconds for k one-epoch trials of one shape: one after another ("solo") or as one cohort ("cohort")."""
    import dataclasses

    from searcher.hyperparams import Hyperparams
    from searcher.losses import LogitKD
    from searcher.train import cohort, distill

    base = Hyperparams(learning_rate=1e-4, batch_size=batch, temperature=2.0, alpha=0.5, epochs=1, seed=0)
    hps = [dataclasses.replace(base, learning_rate=1e-4 * (1 + i), temperature=1.0 + i % 4) for i in range(k)]
    models = [student(layers, hidden, 30522, seed=i) for i in range(k)]
    sync(run)
    started = time.perf_counter()
    if side == "solo":
        for model, hp in zip(models, hps):
            distill.train(model, enc, logits, val, val_logits, hp, run)
    else:
        list(cohort.Cohort([cohort.Member(m, hp, [LogitKD()]) for m, hp in zip(models, hps)], enc, logits, val,
                           val_logits, run).epochs())
    sync(run)
    return time.perf_counter() - started


def measure_cohorts(shapes: list, rounds: int, rows: int, run, data: Path) -> list[dict]:
    from searcher.train import runtime as rt

    out = []
    for layers, hidden, batch, k in shapes:
        enc = encoded(rows, 64, 30522, data, seed=0)
        val = encoded(256, 64, 30522, data, seed=1)
        rng = np.random.default_rng(2)
        logits = rng.normal(size=(len(enc), 2)).astype(np.float32)
        val_logits = rng.normal(size=(len(val), 2)).astype(np.float32)
        cohort_round(layers, hidden, batch, 2, enc, logits, val, val_logits, run, "cohort")  # warm-up
        seconds = {"solo": [], "cohort": []}
        for r in range(rounds):
            for side in ("solo", "cohort") if r % 2 == 0 else ("cohort", "solo"):
                seconds[side].append(cohort_round(layers, hidden, batch, k, enc, logits, val, val_logits, run, side))
                rt.empty_cache(run.device)
                print(f"  L{layers}/H{hidden} batch {batch} x{k} round {r + 1}: {side:6s} {seconds[side][-1]:.2f} s "
                      f"({k * rows / seconds[side][-1]:.0f} trial-samples/s)", flush=True)
        med = {side: float(np.median(v)) for side, v in seconds.items()}
        out.append({"layers": layers, "hidden": hidden, "batch": batch, "cohort": k, "rows": rows,
                    "seconds": seconds, "median_s": med, "ratio_cohort_over_solo": med["cohort"] / med["solo"],
                    "trial_samples_per_s": {side: k * rows / v for side, v in med.items()}})
    return out


def measure_study(args, run, quick: bool, out: Path) -> dict:
    """The fixed study (BERT-mini-sized L2/H128 and L4/H256 students, batch 16/32, a random BERT-base-shaped teacher:
    its logits are right for timing) run by `searcher optimize` one trial at a time and with cohorts, and the
    textbook peer on the same first trials. One trial at a time over 64 x 8 epochs of all of SST-2 would take hours
    on one GPU, so that side and the peer run the first `sample` trials for one epoch and are scaled by trial-epochs
    (said in the results); the cohort side runs the whole study."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import perf

    import shutil

    work = out / "gpu-study-work"
    shutil.rmtree(work, ignore_errors=True)  # a fresh study, cache and peer each run
    work.mkdir(parents=True)
    n_trials, epochs, rows, sample = (4, 1, 256, 2) if quick else (64, 8, 67349, 4)
    train, dev = perf.write_slice(args.data, work, rows, 128 if quick else 872)
    teacher = {"model": str(perf.base_shaped_teacher(work))}
    trials = perf.trial_list(n_trials)
    device = {"device": run.device, "latency": False}
    result = {"trials": n_trials, "epochs": epochs, "rows": rows, "sample_trials": sample}
    for name, tr, ep, cohort in (("sequential_sample", trials[:sample], 1, 1), ("cohorts", trials, epochs, 64)):
        path = perf.searcher_study_file(work, f"study-{name}", train, dev, teacher, tr, ep, work / "cache",
                                        train_options={**device, "cohort": cohort})
        print(f"  study {name}: {len(tr)} trials x {ep} epochs, cohort {cohort}", flush=True)
        result[name] = {k: v for k, v in perf.run_searcher(path).items()
                        if k in ("wall_s", "prepare_s", "states", "phases")}
        print(f"    time by phase: {result[name]['phases']}", flush=True)
    per_trial_epoch = (result["sequential_sample"]["wall_s"] - result["sequential_sample"]["prepare_s"]) / sample
    result["sequential_estimate_s"] = per_trial_epoch * n_trials * epochs
    result["speedup"] = result["sequential_estimate_s"] / (result["cohorts"]["wall_s"] - result["cohorts"]["prepare_s"])
    print(f"  peer: {sample} trials x 1 epoch", flush=True)
    peer = perf.run_peer(work / "peer", train, dev, Path(teacher["model"]), trials[:sample], 1,
                         use_cpu=not run.is_cuda, bf16=run.amp == "bf16")
    result["peer_sample"] = {k: peer[k] for k in ("wall_s", "teacher_s", "states")}
    result["peer_estimate_s"] = peer["wall_s"] / sample * n_trials * epochs
    result["over_peer"] = result["peer_estimate_s"] / result["cohorts"]["wall_s"]
    return result


CPU_COHORTS = [(1, 64, 32, 8)]
GPU_COHORTS = [(2, 128, 32, 8), (2, 128, 1024, 64), (4, 256, 32, 8), (4, 256, 32, 32), (4, 256, 1024, 8),
               (4, 256, 1024, 32), (4, 256, 1024, 64)]
TARGETS = [("cohort of 8 L1/H64 students on 2 CPU cores costs no more than 8 solo trials", "cpu"),
           (">= 1,000,000 aggregate trial-samples/s, L4/H256 at batch 1024", "gpu"),
           (">= 200,000 aggregate trial-samples/s at batch 32", "gpu"),
           ("the 64-trial x 8-epoch study >= 10x faster than sequential", "gpu"),
           (">= 10x the textbook peer (Trainer.hyperparameter_search, bf16)", "gpu")]


def targets(r: dict) -> list[tuple[str, str]]:
    rows = []
    cpu = next((c for c in r.get("cohorts_cpu", []) if (c["layers"], c["hidden"]) == (1, 64)), None)
    for text, where in TARGETS:
        if where == "cpu":
            if cpu is None:
                rows.append((text, "not measured"))
            else:
                ratio = cpu["ratio_cohort_over_solo"]
                rows.append((text, f"{'met' if ratio <= 1.0 else 'NOT MET'}: cohort/solo = {ratio:.2f}"))
        elif not r.get("cuda"):
            rows.append((text, "pending: not measured, no CUDA device on this machine"))
        else:
            gpu = r.get("cohorts_gpu", [])
            study = r.get("study")
            if "64-trial" in text and study:
                rows.append((text, f"{'met' if study['speedup'] >= 10 else 'NOT MET'}: {study['speedup']:.1f}x"))
                continue
            if "peer" in text and study:
                rows.append((text, f"{'met' if study['over_peer'] >= 10 else 'NOT MET'}: {study['over_peer']:.1f}x"))
                continue
            if "1,000,000" in text:
                best = max((c["trial_samples_per_s"]["cohort"] for c in gpu if (c["hidden"], c["batch"]) == (256, 1024)),
                           default=0)
                rows.append((text, f"{'met' if best >= 1e6 else 'NOT MET'}: {best:,.0f}"))
            elif "200,000" in text:
                best = max((c["trial_samples_per_s"]["cohort"] for c in gpu if c["batch"] == 32), default=0)
                rows.append((text, f"{'met' if best >= 2e5 else 'NOT MET'}: {best:,.0f}"))
            else:
                rows.append((text, "not measured by this script yet (the study and peer parts are left: see issue 29)"))
    return rows


def machine(run) -> str:
    import torch

    gpu = torch.cuda.get_device_name(run.device) if run.is_cuda else "no GPU"
    return (f"{platform.node()}, {os.cpu_count()} CPU cores, {gpu}; torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def cohort_lines(r: dict) -> list[str]:
    lines = ["## Cohorts against the same trials one at a time", "",
             "One epoch per trial of distill.train (solo, one after another) against one Cohort.epochs for all "
             "(evaluation of 256 rows per trial included on both sides); medians of interleaved rounds.", "",
             "| where | student | batch | cohort | solo s | cohort s | cohort / solo | trial-samples/s solo | cohort |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for where in ("cpu", "gpu"):
        for c in r.get(f"cohorts_{where}", []):
            m, t = c["median_s"], c["trial_samples_per_s"]
            lines.append(f"| {where} | L{c['layers']}/H{c['hidden']} | {c['batch']} | {c['cohort']} | {m['solo']:.2f} | "
                         f"{m['cohort']:.2f} | {c['ratio_cohort_over_solo']:.2f} | {t['solo']:,.0f} | "
                         f"{t['cohort']:,.0f} |")
    study = r.get("study")
    if study:
        lines += ["", "## The fixed study", "",
                  f"{study['trials']} trials x {study['epochs']} epochs on {study['rows']} rows: with cohorts "
                  f"{study['cohorts']['wall_s']:.1f} s; one trial at a time estimated at "
                  f"{study['sequential_estimate_s']:.1f} s (its first {study['sample_trials']} trials for one epoch, "
                  f"scaled by trial-epochs): **{study['speedup']:.1f}x**. The textbook peer on the same first trials, "
                  f"scaled the same way: {study['peer_estimate_s']:.1f} s: searcher with cohorts is "
                  f"**{study['over_peer']:.1f}x** faster.", "",
                  "Where each side's time went (`searcher optimize`'s time by phase):", ""]
        lines += [f"- {name}: {study[name].get('phases', 'not recorded')}" for name in ("sequential_sample", "cohorts")]
    lines += ["", "## Targets", "", "| target | result |", "|---|---|"]
    lines += [f"| {text} | {verdict} |" for text, verdict in targets(r)]
    return lines + [""]


def markdown(r: dict) -> str:
    lines = ["# GPU throughput: a searcher trial vs a bare AMP loop, and cohorts", "",
             f"Command: `{r['command']}`  ", f"Date: {r['date']}  ", f"Machine: {r['machine']}", ""]
    lines += cohort_lines(r)
    if not r.get("cuda"):
        lines += ["## A trial against a bare AMP loop", "", r["note"], ""]
        if "result" not in r:
            return "\n".join(lines)
    s, res = r["setup"], r["result"]
    med = res["median_samples_per_s"]
    lines += [f"Student BERT L{s['layers']}/H{s['hidden']} (random init), batch {s['batch']}, {res['rows']} rows of "
              f"SST-2 lengths (max_length {s['max_length']}), AMP {r['amp']} on {r['device']}; {s['rounds']} "
              f"interleaved rounds, medians. The searcher side is distill.train for one epoch including an evaluation "
              f"of {res['eval_rows']} rows; the bare loop only trains.", "",
              "| | samples/s (median) | peak memory MB (per trial) |", "|---|---:|---:|",
              f"| bare AMP loop | {med['bare']:.0f} | {max(res['peak_memory_mb']['bare']):.0f} |",
              f"| searcher trial (distill.train) | {med['searcher']:.0f} | "
              f"{max(res['peak_memory_mb']['searcher']):.0f} |", "",
              f"**searcher / bare = {res['ratio_searcher_over_bare']:.2f}** (1.00 = no overhead).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="GPU throughput of a searcher trial vs a bare AMP loop")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results; "
                                                                "/tmp/searcher-gpu-quick with --quick)")
    parser.add_argument("--quick", "--dry-run", dest="quick", action="store_true",
                        help="CPU smoke test: a tiny model, a few steps (the code path, not a measurement)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--cohort-rows", type=int, default=None, help="rows per trial in the cohort part "
                                                                      "(default 2048, 256 with --quick)")
    parser.add_argument("--cpu-cohort", dest="cpu_cohorts", action="append", default=None, metavar="L,H,BATCH,K",
                        type=lambda text: tuple(int(x) for x in text.split(",")),
                        help="a student shape for the CPU cohort part, repeatable (default 1,64,32,8: the target's)")
    parser.add_argument("--cpu-rounds", type=int, default=None, help="interleaved rounds of the CPU cohort part "
                                                                     "(default 5, 1 with --quick)")
    args = parser.parse_args(argv)
    out = args.out or (Path("/tmp/searcher-gpu-quick") if args.quick else ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)

    import torch

    from searcher.train import runtime as rt

    sizes = dict(QUICK if args.quick else FULL)
    if args.rounds:
        sizes["rounds"] = args.rounds
    command = "python benchmarks/gpu.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    cuda = torch.cuda.is_available()
    run = rt.resolve("cuda" if cuda and not args.quick else "cpu", "auto" if cuda and not args.quick else "off")
    results = {"command": command.strip(), "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(run),
               "cuda": cuda and not args.quick, "device": run.device, "amp": run.amp, "setup": sizes}
    cpu = rt.resolve("cpu", "off")
    rows = args.cohort_rows or (256 if args.quick else 2048)
    cpu_rounds = args.cpu_rounds or (1 if args.quick else 5)
    results["cohorts_cpu"] = measure_cohorts(args.cpu_cohorts or CPU_COHORTS, cpu_rounds, rows, cpu, args.data)
    if cuda and not args.quick:
        results["cohorts_gpu"] = measure_cohorts(GPU_COHORTS, 3, 65536, run, args.data)
    if (cuda or args.quick) and args.data.joinpath("sst2").is_dir():
        results["study"] = measure_study(args, run, args.quick, out)
    if not cuda and not args.quick:
        print("no CUDA device")
        results["note"] = ("No CUDA device on this machine: nothing was measured. Run `nox -s gpu` (or this "
                           "script) on a machine with an NVIDIA GPU.")
    else:
        if args.quick:
            results["note"] = ("Smoke test on the CPU (--quick): a tiny model and a few steps, fp32. It exercises the "
                               "code path; its numbers are not a GPU measurement.")
        print(f"{run.device}, AMP {run.amp}: L{sizes['layers']}/H{sizes['hidden']}, batch {sizes['batch']}, "
              f"{sizes['rows']} rows, {sizes['rounds']} rounds", flush=True)
        results["result"] = measure(sizes, run, args.data)
        print(f"searcher / bare = {results['result']['ratio_searcher_over_bare']:.2f}")
    (out / "gpu.json").write_text(json.dumps(results, indent=1))
    (out / "gpu.md").write_text(markdown(results))
    print(f"wrote {out / 'gpu.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
