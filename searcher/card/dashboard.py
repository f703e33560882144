"""What optuna-dashboard shows for a searcher study, and `searcher dashboard` to start it.

After every trial: the study note (teacher, data, leaderboard, publications), a plotly figure (accuracy against
student parameters, the Pareto front highlighted for multi-objective studies) and the kept trials' cards as
artifacts (searcher.records.artifacts).
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

import optuna
from optuna.trial import FrozenTrial

from searcher.card import attached
from searcher.records import artifacts
from searcher import records
from searcher.card import display_name
from searcher.config import StudyConfig
from searcher.errors import SearcherError, first_line
from searcher.records.storage import ATTR_DATASET, ATTR_PRUNER, ATTR_SAMPLER, ATTR_STOPPED, ATTR_TEACHER

log = logging.getLogger(__name__)

FIGURE_ID = "searcher-accuracy-vs-params"
NOTE_TOP = 10


def note_markdown(study: optuna.Study, config: StudyConfig) -> str:
    attrs = study.user_attrs
    teacher = attrs.get(ATTR_TEACHER, {})
    data = attrs.get(ATTR_DATASET, {})
    counts = records.state_counts(study)
    objectives = list(study.metric_names or config.study.objectives)
    t_metrics = (teacher.get("metrics") or {}).get("validation", {})
    t_lat = teacher.get("latency_ms") or {}
    source = data.get("dataset") or ", ".join(f"{k}: {v}" for k, v in (data.get("files") or {}).items())
    lines = [
        f"# {study.study_name}",
        "",
        (f"**Teachers**: an ensemble of {len(teacher['members'])} (the mean of their {teacher.get('combine')}: "
         + ", ".join(str(m.get("name")) for m in teacher["members"]) + ")"
         if teacher.get("members") else
         f"**Teacher**: {display_name(teacher.get('model') or teacher.get('base'))}"
         + (" (fine-tuned by searcher)" if teacher.get("fine_tuned_by_searcher") else ""))
        + f", L{teacher.get('layers')}/H{teacher.get('hidden')}, {teacher.get('params', 0) / 1e6:.1f}M parameters; "
        + ", ".join(f"{k} {v:.4f}" for k, v in t_metrics.items() if k not in ("loss", "cross_entropy"))
        + (f"; CPU latency {t_lat['single_median']:.1f} ms" if t_lat else ""),
        "",
        *_baseline_lines(teacher),
        f"**Data**: {source}" + (f" ({data['subset']})" if data.get("subset") else "")
        + f"; sizes {data.get('sizes', {})}; labels {', '.join(data.get('label_names', [])[:12])}"
        + ("..." if len(data.get("label_names", [])) > 12 else ""),
        "",
        f"**Trials**: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, {counts['FAIL']} failed, "
        f"{counts['RUNNING']} running",
        "",
        f"**Search**: sampler {attrs.get(ATTR_SAMPLER, '?')}; pruner {attrs.get(ATTR_PRUNER, '?')}"
        + (f"; stopped early: {attrs[ATTR_STOPPED]}" if attrs.get(ATTR_STOPPED) else ""),
        "",
        "## Leaderboard",
        "",
        "| rank | trial | " + " | ".join(objectives) + " | student | params | size MB | latency ms | saved | published |",
        "|---:|---:|" + "---:|" * len(objectives) + "---|---:|---:|---:|---|---|",
    ]
    for rank, t in enumerate(records.ranked(study)[:NOTE_TOP], start=1):
        r = records.TrialRecord.from_trial(t)
        pub = attrs.get(f"hub:trial-{r.number}")
        lines.append(
            f"| {rank} | {r.number} | " + " | ".join(f"{v:.4f}" for v in r.values) + f" | {r.student_label} | "
            f"{r.student.get('params', 0) / 1e6:.1f}M | {r.size_mb if r.size_mb is not None else '-'} | "
            f"{r.latency_ms.get('single_median', '-') if r.latency_ms else '-'} | {'yes' if r.kept else 'no'} | "
            + (f"[{pub['repo_id']}]({pub['url']})" if pub else "-") + " |")
    published = sorted(k for k in attrs if k.startswith("hub:trial-"))
    if published:
        lines += ["", "## Published", ""]
        for key in published:
            p = attrs[key]
            lines.append(f"- trial {key.split('-')[-1]}: [{p['repo_id']}]({p['url']}) commit {p['commit'][:12]} "
                         f"({'private' if p.get('private') else 'public'}, {p.get('time')})")
    return "\n".join(lines) + "\n"


def _baseline_lines(teacher: dict) -> list[str]:
    """The warning for teachers no better than the task's constant baseline (searcher.teachers.baseline), if any."""
    verdict = teacher.get("baseline") or {}
    if not verdict.get("no_better"):
        return []
    named = ", ".join(f"{t['name']} ({t['value']:.4f})" for t in verdict["no_better"])
    return [f"**Warning**: no better than {verdict['constant']} ({verdict['metric']} {verdict['value']:.4f} on the "
            f"validation split): {named}. A teacher at that baseline learned nothing of the task to teach.", ""]


def update_note(study: optuna.Study, config: StudyConfig) -> None:
    from optuna_dashboard import save_note

    save_note(study, note_markdown(study, config))


def figure(study: optuna.Study):
    """Accuracy (the first objective) against student parameters; the Pareto front highlighted."""
    import plotly.graph_objects as go

    trials = records.completed(study)
    front = {t.number for t in records.pareto(study)} if len(study.directions) > 1 else set()
    name = (study.metric_names or ["accuracy"])[0]

    def points(ts):
        return dict(x=[t.user_attrs.get(records.STUDENT, {}).get("params", 0) / 1e6 for t in ts],
                    y=[t.values[0] for t in ts],
                    text=[f"trial {t.number}: {records.TrialRecord.from_trial(t).student_label}" for t in ts])

    fig = go.Figure()
    rest = [t for t in trials if t.number not in front]
    fig.add_trace(go.Scatter(mode="markers", name="trials", marker=dict(size=9, color="#5b8def"), **points(rest)))
    if front:
        ordered = sorted((t for t in trials if t.number in front),
                         key=lambda t: t.user_attrs.get(records.STUDENT, {}).get("params", 0))
        fig.add_trace(go.Scatter(mode="markers+lines", name="Pareto front",
                                 marker=dict(size=12, color="#e4572e", symbol="diamond"), **points(ordered)))
    fig.update_layout(title=f"{name} vs student size", xaxis_title="student parameters (millions)",
                      yaxis_title=name, template="plotly_white")
    return fig


def save_figure(study: optuna.Study) -> None:
    from optuna_dashboard import save_plotly_graph_object

    save_plotly_graph_object(study, figure(study), graph_object_id=FIGURE_ID)


def refresh(study: optuna.Study, config: StudyConfig) -> None:
    update_note(study, config)
    save_figure(study)
    attached.sync_cards(study, config)


def after_trial_hook(config: StudyConfig) -> Callable[[optuna.Study, FrozenTrial], None]:
    def hook(study: optuna.Study, trial: FrozenTrial) -> None:
        try:
            refresh(study, config)
        except (SearcherError, OSError, ValueError) as e:  # the dashboard is a view: it must not stop a search
            log.warning("dashboard: could not update the study's note/figure/cards (%s)", first_line(e))

    return hook


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _check_address(host: str, port: int) -> None:
    """A port that can be served, free now; and one line of warning when the API is reachable from elsewhere."""
    import socket

    from searcher.errors import ConfigError

    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port; use 1-65535 (default 8080)")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as e:
        raise ConfigError(f"cannot serve on {host}:{port} ({e.strerror or e}); pass a free --port or another --host")
    if host not in LOOPBACK:
        log.warning("dashboard: serving on %s: optuna-dashboard has no login, and anyone who can reach this machine "
                    "can read and delete studies; prefer --host 127.0.0.1 with an SSH tunnel", host)


def serve(config: StudyConfig, storage_url: Optional[str], host: str, port: int) -> int:
    """Run optuna-dashboard on the study's storage and artifact folder (blocks until Ctrl-C)."""
    from optuna_dashboard import run_server

    from searcher.records.storage import open_storage, redact

    _check_address(host, port)
    url = config.storage_url(storage_url)
    storage = open_storage(url, config)
    if config.study.name not in [s.study_name for s in optuna.get_all_study_summaries(storage)]:
        from searcher.errors import StudyError

        raise StudyError(f"no study named {config.study.name!r} in {redact(url)}; run `searcher optimize "
                         f"{config.path}` first")
    print(f"optuna-dashboard for study {config.study.name!r} ({redact(url)}): http://{host}:{port}/dashboard/",
          flush=True)
    run_server(storage, host=host, port=port, artifact_store=artifacts.store(config))
    return 0
