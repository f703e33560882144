"""Metrics: built-ins equal their textbook definitions; any `evaluate` metric is one declaration away, as an objective
or a reported metric, loaded once per process and shown under its name everywhere."""

import json
import textwrap

import numpy as np
import optuna
import pytest

from searcher.tasks import metrics
from searcher.config import load_study
from searcher.errors import ConfigError

MCC_MODULE = '''
import datasets
import evaluate
import numpy as np


class MatthewsCorrelation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Matthews correlation coefficient (how CoLA is judged)", citation="", inputs_description="",
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        p, r = np.asarray(predictions), np.asarray(references)
        tp, tn = float(((p == 1) & (r == 1)).sum()), float(((p == 0) & (r == 0)).sum())
        fp, fn = float(((p == 1) & (r == 0)).sum()), float(((p == 0) & (r == 1)).sum())
        den = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
        return {"matthews_correlation": (tp * tn - fp * fn) / den if den else 0.0}
'''

TWO_KEYS = '''
import datasets
import evaluate


class Both(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("int64"),
                                                               "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, pos_label=1):
        hits = sum(int(p == r == pos_label) for p, r in zip(predictions, references))
        return {"hits": float(hits), "rows": float(len(references))}
'''


def mcc(p, r):
    p, r = np.asarray(p), np.asarray(r)
    tp, tn, fp, fn = (((p == a) & (r == b)).sum() for a, b in ((1, 1), (0, 0), (1, 0), (0, 1)))
    return (tp * tn - fp * fn) / np.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))


@pytest.fixture
def mcc_file(tmp_path):
    path = tmp_path / "mcc" / "matthews_correlation.py"
    path.parent.mkdir()
    path.write_text(MCC_MODULE)
    return path


def test_builtins_are_the_textbook_macro_scores():
    p = np.array([0, 1, 1, 2, 2, 2, 0])
    r = np.array([0, 1, 2, 2, 2, 1, 1])
    out = metrics.classification_metrics(p, r)
    precision = [1 / 2, 1 / 2, 2 / 3]  # per label: tp / predicted
    recall = [1 / 1, 1 / 3, 2 / 3]  # tp / actual
    f1 = [2 * a * b / (a + b) for a, b in zip(precision, recall)]
    assert out == pytest.approx({"accuracy": 4 / 7, "precision": np.mean(precision), "recall": np.mean(recall),
                                 "f1": np.mean(f1)})
    assert all(type(v) is float for v in out.values())  # never numpy scalars: they break JSON and YAML


def test_a_label_never_seen_counts_nowhere_and_an_empty_split_scores_zero():
    assert metrics.classification_metrics([0, 0], [0, 0]) == {"accuracy": 1.0, "f1": 1.0, "precision": 1.0,
                                                               "recall": 1.0}
    assert metrics.classification_metrics([], [])["accuracy"] == 0.0


def test_an_evaluate_module_is_loaded_once_and_recorded_under_its_name(mcc_file, monkeypatch):
    import evaluate

    loads = []
    real = evaluate.load
    monkeypatch.setattr(evaluate, "load", lambda *a, **k: loads.append(a) or real(*a, **k))
    metrics._evaluate_module.cache_clear()
    spec = metrics.MetricSpec("matthews_correlation", load=str(mcc_file))
    study_metrics = metrics.for_study(["matthews_correlation"], [], {spec.name: spec})
    again = metrics.for_study(["accuracy"], ["matthews_correlation"], {spec.name: spec})
    assert len(loads) == 1  # once per process, however many studies or workers' objectives ask
    p, r = np.array([0, 1, 1, 0, 1, 0]), np.array([0, 1, 0, 0, 1, 1])
    out = study_metrics(np.eye(2)[p], r)  # a MetricSet takes outputs; the task kind predicts (argmax)
    assert list(out) == ["accuracy", "f1", "precision", "recall", "matthews_correlation"]
    assert out["matthews_correlation"] == pytest.approx(mcc(p, r))
    assert again.names == study_metrics.names


def test_a_module_with_several_results_needs_its_key(tmp_path):
    path = tmp_path / "both.py"
    path.write_text(TWO_KEYS)
    with pytest.raises(ConfigError, match=r"returns \['hits', 'rows'\]; set \[metrics.positive_hits\] key"):
        metrics.load(metrics.MetricSpec("positive_hits", load=str(path)))
    m = metrics.load(metrics.MetricSpec("positive_hits", load=str(path), key="hits", kwargs=json.dumps(
        {"pos_label": 0})))
    assert m.compute(np.array([0, 0, 1]), np.array([0, 1, 1])) == 1.0  # kwargs reach compute()


def test_a_metric_that_cannot_load_fails_before_training_with_the_way_out():
    with pytest.raises(ConfigError, match=r"evaluate.load\('no_such_metric_here'\) failed .*load at a local"):
        metrics.load(metrics.MetricSpec("no_such_metric_here"))


@pytest.mark.parametrize("snippet, message", [
    ('objectives = ["accuarcy"]', "unknown metric 'accuarcy'; did you mean 'accuracy'?"),
    ('objectives = ["latency_ms"]', "should be paired with direction 'minimize'"),
])
def test_metric_names_are_checked_with_the_study_file(world, tmp_path, snippet, message):
    path = world.study(tmp_path)
    path.write_text(path.read_text().replace("[study]\n", f"[study]\n{snippet}\n", 1))
    with pytest.raises(ConfigError, match=message):
        load_study(path)


def test_metrics_section_is_validated(world, tmp_path):
    path = world.study(tmp_path)
    path.write_text(path.read_text() + '\n[metrics.mcc]\nlaod = "x"\n')
    with pytest.raises(ConfigError, match=r"\[metrics.mcc\] unknown key 'laod'; did you mean 'load'\?"):
        load_study(path)


def test_a_cola_style_study_optimizes_matthews_correlation(world, tmp_path, cli, mcc_file):
    """[study] objectives names a metric that is not built in: it is the study's objective, reported per epoch for
    pruning, and shown under its name by the leaderboard, the records and the card."""
    path = world.study(tmp_path, study={"n_trials": 2, "objectives": ["matthews_correlation"],
                                        "pruner": {"type": "median", "n_startup_trials": 1}})
    path.write_text(path.read_text() + textwrap.dedent(f'''
        [metrics.matthews_correlation]
        load = "{mcc_file}"
        '''))
    code, out, err = cli("optimize", path)
    assert code == 0, err
    study = optuna.load_study(study_name="tiny", storage=load_study(path).storage_url())
    assert study.metric_names == ["matthews_correlation"]
    best = study.best_trial
    assert best.value == best.user_attrs["metrics"]["matthews_correlation"]
    assert best.intermediate_values[3] == best.user_attrs["history"]["matthews_correlation"][-1] == best.value
    assert -1.0 <= best.value <= 1.0 and best.value != best.user_attrs["metrics"]["accuracy"]
    assert "matthews_correlation" in out.splitlines()[-(len(study.trials) + 4)]  # the leaderboard's header
    code, out, err = cli("card", path, "--best", "--out", tmp_path / "cards")
    assert code == 0, err
    text = (tmp_path / "cards" / f"trial-{best.number:04d}" / "README.md").read_text()
    assert f"- Matthews Correlation: {best.value:.4f}" in text and "type: matthews_correlation" in text
    assert "| Matthews Correlation |" in text
