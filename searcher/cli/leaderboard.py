"""The leaderboard `searcher best` prints: ranked complete trials with metrics, student, hyperparameters and where
the saved student is."""

from __future__ import annotations

import optuna

from searcher import hyperparams, tasks
from searcher.tasks import metrics as metrics_lib
from searcher.records.trial import TrialRecord, ranked, state_counts
from searcher.search.space import searched_names


def rows(study: optuna.Study, config, top: int) -> list[dict]:
    out = []
    for rank, trial in enumerate(ranked(study)[:top], start=1):
        r = TrialRecord.from_trial(trial)
        out.append({
            "rank": rank,
            "trial": r.number,
            "values": dict(zip(study.metric_names or config.study.objectives, r.values or [])),
            "metrics": r.metrics,
            "test_metrics": r.test_metrics,
            "student": r.student,
            "params": r.params,
            "hyperparams": r.hyperparams,
            "latency_ms": r.latency_ms,
            "size_mb": r.size_mb,
            "training_rows": r.training_rows,
            "formats": {k: v for k, v in r.formats.items() if k not in ("files", "tokenizer_json")},
            "model_dir": r.model_dir if r.kept else None,
            "published": study.user_attrs.get(f"hub:trial-{r.number}"),
        })
    return out


def render(study: optuna.Study, config, top: int) -> str:
    counts = state_counts(study)
    head = (f"study {study.study_name}: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
            f"{counts['FAIL']} failed, {counts['RUNNING']} running, {counts['WAITING']} waiting")
    table = rows(study, config, top)
    if not table:
        return head + "\nno complete trial yet"
    test = any(row["test_metrics"] for row in table)
    extra_rows = any(row["training_rows"].get("transfer") or row["training_rows"].get("augmented") for row in table)
    objectives = list(study.metric_names or config.study.objectives)
    kind = tasks.KINDS[(study.user_attrs.get("dataset") or {}).get("task") or tasks.DEFAULT]
    # beside the objectives: the kind's next built-in metric (f1 for classification), and the first on the test split
    builtin = list(kind.metrics)
    side = next((m for m in builtin if m not in objectives), None)
    primary = metrics_lib.split_objective(objectives[0])[0]
    tested = primary if primary in builtin else builtin[0]
    header = ["rank", "trial", *objectives]
    if side:
        header.append(side)
    if test:
        header.append(f"test {'acc' if tested == 'accuracy' else tested}")
    shown = hyperparams.columns(searched_names(config))
    header += ["student", "params", *[h.column or h.name for h in shown]]
    if extra_rows:
        header.append("rows")  # labeled + teacher-labeled rows trained on
    header += ["latency ms", "saved student"]
    lines = [header]
    for row in table:
        r, hp, s = row, row["hyperparams"], row["student"]
        cells = [str(r["rank"]), str(r["trial"])]
        cells += [f"{v:.4f}" for v in r["values"].values()]
        if side:
            cells.append(f"{r['metrics'].get(side, float('nan')):.4f}")
        if test:
            cells.append(f"{r['test_metrics'].get(tested, float('nan')):.4f}" if r["test_metrics"] else "-")
        if s.get("family") == "static":  # a table and a head: its dimension, head and whether the table trained
            label = f"static/D{s.get('static_dim')} {s.get('static_head')}" + \
                ("" if s.get("static_train_embeddings") else " frozen")
        else:
            label = f"L{s.get('layers')}/H{s.get('hidden')}/A{s.get('heads')}"
            if s.get("init") != "pretrained":
                label += f" {s.get('init')}"
        cells += [label, f"{s.get('params', 0) / 1e6:.1f}M", *[hyperparams.cell(h, hp.get(h.name)) for h in shown]]
        if extra_rows:
            t = r["training_rows"]
            cells.append(f"{t.get('labeled', 0)}+{t.get('transfer', 0) + t.get('augmented', 0)}")
        cells += [f"{r['latency_ms'].get('single_median'):.1f}" if r["latency_ms"] else "-",
                  (r["model_dir"] or "(not kept)") + (f"  [hub: {r['published']['repo_id']}]"
                                                      if r["published"] else "")]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [head, ""]
    for i, line in enumerate(lines):
        text.append("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        if i == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(text)
