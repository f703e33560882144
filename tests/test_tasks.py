"""Task kinds (searcher.tasks): one test of the shared promises parametrized over every kind, references for each
kind's metrics and distillation terms, then regression and multi-label studies end to end on tiny data."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from searcher import tasks
from searcher.errors import DataError
from searcher.testing.tasks import TaskKindPromises

DATA = SimpleNamespace(label_column="label", label_names=None, label_delimiter=",")
RAW = {  # raw label values per split, as a file gives them; every registered kind needs one
    "single_label": {"train": ["neg", "pos", "pos", "neg"], "validation": ["pos", "neg"]},
    "multi_label": {"train": [["a", "b"], ["b"], [], ["c", "a"]], "validation": ["a,c", "b"]},
    "regression": {"train": [0.5, 3.8, 5.0, 2.25], "validation": [1.0, 4.4]},
}


def logits_for(kind, n, width, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, width)).astype(np.float32))


class TestEveryTaskKind(TaskKindPromises):
    """The shared promises (searcher.testing.tasks) over every registered kind."""

    @pytest.fixture(params=list(tasks.KINDS))
    def kind_class(self, request):
        return tasks.KINDS[request.param]

    @pytest.fixture
    def raw_labels(self, kind_class):
        return RAW[kind_class.name]


def test_a_score_is_never_truncated_to_a_class():
    """STS-B's 3.8 used to become class 3 ("the data has 6 labels"): now it is regression, or refused."""
    assert tasks.infer([1.0, 3.8, 5.0]) == ("regression", "the labels are numbers that are not all whole "
                                                          "(e.g. 3.8)")
    assert tasks.infer([0.0, 1.0, 2.0])[0] == "single_label"
    assert tasks.infer([["a"], ["b"]])[0] == "multi_label"
    with pytest.raises(DataError, match=r"holds 3\.8, not a class id: a score is never truncated to a class; set "
                                        r"\[data\] task = \"regression\""):
        tasks.kind("single_label").read_labels({"train": [1.0, 3.8]}, DATA, None, None)


def test_regression_metrics_and_terms_reference():
    from scipy import stats

    kind = tasks.kind("regression")
    p = np.array([0.1, 2.0, 2.0, 3.5, 4.9, 1.2])
    r = np.array([0.0, 2.5, 1.5, 3.0, 5.0, 2.0])
    s = kind.scores(p[:, None], r)
    assert s["pearson"] == pytest.approx(stats.pearsonr(p, r)[0])
    assert s["spearmanr"] == pytest.approx(stats.spearmanr(p, r)[0])  # ties ranked by their mean position
    assert s["mse"] == pytest.approx(np.mean((p - r) ** 2))
    assert s["combined_score"] == pytest.approx((s["pearson"] + s["spearmanr"]) / 2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy warns on constant input: searcher says 0 without a warning
        flat = kind.scores(np.full((6, 1), 2.0), r)
        assert flat["pearson"] == 0.0 and flat["spearmanr"] == 0.0 and kind.scores(p[:1, None], r[:1])["pearson"] == 0
    student, teacher = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([[1.5], [2.0], [3.0]])
    labels = torch.tensor([1.0, float("nan"), 5.0])
    expected = 0.25 * ((1 - 1) ** 2 + (4 - 5) ** 2) + 0.75 * (0.5 ** 2 + 0 + 1.0 ** 2)
    assert kind.kd(student, teacher, labels, 0.25, 9.0).item() == pytest.approx(expected)  # no temperature


def test_multi_label_metrics_threshold_and_terms_reference():
    kind = tasks.kind("multi_label")
    logits = np.array([[2.0, -1.0, 0.3], [-2.0, 1.0, -0.1], [1.0, 0.1, -3.0]])
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0]], np.float32)
    predicted = kind.predict(logits)  # sigmoid > 0.5
    assert predicted.tolist() == [[1, 0, 1], [0, 1, 0], [1, 1, 0]]
    s = kind.scores(logits, labels)
    assert s["subset_accuracy"] == pytest.approx(2 / 3)
    assert s["micro_f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 0))  # tp 4, fp 1, fn 0
    assert s["macro_f1"] == pytest.approx(np.mean([1.0, 2 / 3, 1.0]))
    tuned = tasks.kind("multi_label", threshold=None)
    t = tuned.tune(logits, labels)
    assert t == 0.55 and tuned.scores(logits, labels, threshold=t)["micro_f1"] == 1.0  # sigmoid(0.1) = 0.525
    assert tasks.kind("multi_label", threshold=0.5).tune(logits, labels) is None  # a fixed threshold stays
    # per example the mean over labels of alpha * BCE(gold) + (1 - alpha) * T^2 * BCE at T against the teacher
    st, te = torch.tensor(logits[:2]), torch.tensor(logits[1:] * 0.5)
    y = torch.tensor([[1.0, 0.0, 1.0], [float("nan")] * 3])
    sig = torch.sigmoid

    def bce(x, target):
        return -(target * torch.log(sig(x)) + (1 - target) * torch.log(1 - sig(x)))

    expected = 0.4 * bce(st[0], y[0]).mean() + 0.6 * 4.0 * sum(bce(st[i] / 2, sig(te[i] / 2)).mean() for i in (0, 1))
    assert kind.kd(st, te, y, 0.4, 2.0).item() == pytest.approx(expected.item(), rel=1e-5)


def test_multi_label_reads_lists_and_delimited_strings_in_the_teachers_order():
    kind = tasks.kind("multi_label")
    names, labels = kind.read_labels({"train": [["b"], "a, c", []]}, DATA, None, ["c", "b", "a"])
    assert names == ("c", "b", "a") and labels["train"].tolist() == [[0, 1, 0], [1, 0, 1], [0, 0, 0]]
    with pytest.raises(DataError, match="set \\[data\\] label_delimiter"):
        kind.read_labels({"train": ["a,b"]}, SimpleNamespace(**{**vars(DATA), "label_delimiter": None}), None, None)


# ---------------------------------------------------------------------------------------------------------------
# Studies end to end: a regression (STS-B-like scores) and a multi-label study on the tiny world's sentences


def write_task_data(world, tmp_path, kind: str):
    import csv
    import random

    from conftest import BAD, GOOD, sentence

    rng = random.Random(3)
    paths = {}
    for split, n in (("train", 160), ("validation", 48), ("test", 48)):
        rows = []
        for _ in range(n):
            text = sentence(rng, rng.randint(0, 1))
            words = text.split()
            good, bad = sum(w in GOOD for w in words), sum(w in BAD for w in words)
            if kind == "regression":  # a score in [0, 5]: how positive the sentence is
                rows.append({"text": text, "score": round(5 * good / max(1, good + bad), 2)})
            else:  # labels: praise, criticism, both
                rows.append({"text": text, "labels": [x for x, on in (("praise", good), ("criticism", bad)) if on]})
        if kind == "regression":
            path = tmp_path / f"{split}.csv"
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, ["text", "score"])
                w.writeheader()
                w.writerows(rows)
        else:
            path = tmp_path / f"{split}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths[split] = str(path)
    return paths


def task_study(world, tmp_path, kind: str, **over):
    paths = write_task_data(world, tmp_path, kind)
    label = "score" if kind == "regression" else "labels"
    sections = {
        "data": {"train": paths["train"], "validation": paths["validation"], "test": paths["test"],
                 "label_column": label, **over.pop("data", {})},
        "teacher": {"model": None, "base": str(world.base), "fine_tune": {"epochs": 4, "learning_rate": 3e-3,
                                                                          "batch_size": 16}},
        "study": {"n_trials": 2, "pruner": {"type": "median", "n_startup_trials": 1}},
        # a regression study file names no temperature (the tiny world's study has one: removed)
        "search": {"epochs": 3, **({"temperature": None} if kind == "regression" else {})},
        "export": {"formats": ["onnx"]},
    }
    for key, value in over.items():
        sections.setdefault(key, {}).update(value)
    return world.study(tmp_path, name=kind.replace("_", "-"), **sections)


def test_a_regression_study_runs_prunes_exports_cards_and_imports(world, tmp_path, cli):
    from pathlib import Path

    import optuna

    from searcher import recipes
    from searcher.config import load_study

    path = task_study(world, tmp_path, "regression")  # [data] task not given: inferred from the float scores
    code, out, err = cli("optimize", path)
    assert code == 0, err
    assert "text regression (one score per row) inferred (the labels are numbers that are not all whole" in err
    assert "the objective is pearson" in err
    # issue 28: the trial lines and the last line named "accuracy" for the Pearson correlation
    (last,) = [line for line in out.splitlines() if line.startswith("best student:")]
    assert ", pearson " in last and "accuracy" not in last, last
    trial_lines = [line for line in out.splitlines() if line.startswith("trial ") and " complete " in line]
    assert trial_lines and all(" pearson " in line and "accuracy" not in line for line in trial_lines), out
    config = load_study(path)
    study = optuna.load_study(study_name="regression", storage=config.storage_url())
    assert study.metric_names == ["pearson"] and study.user_attrs["dataset"]["task"] == "regression"
    teacher = study.user_attrs["teacher"]["metrics"]["validation"]
    assert {"pearson", "spearmanr", "mse", "combined_score"} <= set(teacher) and teacher["pearson"] > 0.5
    best = study.best_trial
    assert best.value == best.user_attrs["metrics"]["pearson"] and -1 <= best.value <= 1
    assert {"pearson", "spearmanr", "mse"} <= set(best.user_attrs["test_metrics"])
    onnx = best.user_attrs["formats"]["onnx"]
    assert onnx["parity"]["ok"] and onnx["parity"]["max_abs_logit_diff"] <= 1e-4 and "pearson" in onnx
    assert "pearson" in out and "test pearson" in out  # the leaderboard's columns
    code, out, err = cli("card", path, "--best", "--out", tmp_path / "cards")
    assert code == 0, err
    folder = Path(out.split()[0])
    text = (folder / "README.md").read_text()
    assert 'function_to_apply="none")' in text and "- Pearson: " in text and "| Validation MSE |" in text
    assert "type: pearson" in text and "- Task: text regression" in text
    # the card's loss is the regression one, not single-label KD's softmax/KL formula
    assert "(student - teacher)^2" in best.user_attrs["recipe"]["loss"] and "KL(softmax" not in text
    exported = json.loads((folder / "config.json").read_text())
    assert exported["problem_type"] == "regression" and len(exported["id2label"]) == 1
    (r,) = recipes.read(str(folder / "README.md"))
    assert r.values["learning_rate"] == best.params["learning_rate"]
    assert any(p.metric_type == "pearson" and p.value == pytest.approx(best.value) for p in r.published)


def test_a_multi_label_study_with_a_tuned_threshold(world, tmp_path, cli):
    from pathlib import Path

    import optuna

    from searcher.config import load_study

    path = task_study(world, tmp_path, "multi_label", data={"task": "multi_label", "threshold": "tuned"})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    config = load_study(path)
    study = optuna.load_study(study_name="multi-label", storage=config.storage_url())
    assert study.metric_names == ["micro_f1"]
    best = study.best_trial
    assert 0.05 <= best.user_attrs["threshold"] <= 0.95
    assert {"micro_f1", "macro_f1", "subset_accuracy"} <= set(best.user_attrs["metrics"])
    assert best.user_attrs["formats"]["onnx"]["parity"]["ok"]
    code, out, err = cli("card", path, "--best", "--out", tmp_path / "cards")
    assert code == 0, err
    folder = Path(out.split()[0])
    text = (folder / "README.md").read_text()
    assert "decision threshold" in text and "tuned on the validation split" in text
    assert 'top_k=None, function_to_apply="sigmoid")' in text
    assert json.loads((folder / "config.json").read_text())["problem_type"] == "multi_label_classification"


@pytest.mark.parametrize("change, message", [
    ({"data": {"task": "single_label"}}, "not a class id: a score is never truncated to a class"),
    ({"teacher": {"model": "WORLD_TEACHER", "base": None}},
     "predicts 2 labels but the data has 1"),
    ({"search": {"temperature": [1.0, 4.0]}, "data": {"task": "regression"}},
     "[search] temperature does not apply to text regression"),
    ({"data": {"task": "regression"}, "study": {"objectives": ["accuracy"]}},
     "'accuracy' is a metric of text classification (one label per row), and this study is text regression"),
    ({"data": {"threshold": 0.3}}, "[data] threshold is the decision threshold of multi-label classification"),
])
def test_bad_task_settings_are_one_line_before_training(world, tmp_path, cli, change, message):
    for section in change.values():
        for key, value in section.items():
            if value == "WORLD_TEACHER":
                section[key] = str(world.teacher)
    path = task_study(world, tmp_path, "regression", **change)
    code, _, err = cli("optimize", path)
    assert code == 2 and message in err, err
    assert "Traceback" not in err


def test_a_trainer_card_with_pearson_results_imports_into_a_regression_study(tmp_path):
    """The Trainer's STS-B card: its recipe and its published correlations, compared on the card when the data match."""
    from pathlib import Path

    from searcher import recipes
    from searcher.config import load_study

    card = Path(__file__).parent / "cards" / "trainer-stsb.README.md"
    (r,) = recipes.read(str(card))
    assert r.values == {"learning_rate": 0.0001, "batch_size": 32, "epochs": 4, "layers": 4, "hidden": 256,
                        "init": "pretrained"}
    published = {(p.metric_type, p.dataset_split): p.value for p in r.published}
    assert published[("spearmanr", "validation")] == 0.8448  # model-index: exact
    assert published[("pearson", "validation")] == 0.8473  # the results sentence adds what model-index lacks
    study = tmp_path / "stsb.toml"
    study.write_text("""
[study]
name = "stsb"
[data]
dataset = "glue"
subset = "stsb"
text_columns = ["sentence1", "sentence2"]
task = "regression"
[teacher]
model = "some/stsb-teacher"
[student]
layers = [2, 4]
hidden = [128, 256]
[search]
learning_rate = [1e-5, 1e-3]
batch_size = [16, 32, 64]
epochs = [3, 4]
temperature = 1.0
""")
    config = load_study(study)
    assert config.study.objectives == ("pearson",)  # the kind's default objective
    assert recipes.conflicts([r], config) == []
    (entry,) = [e for e in __import__("tomllib").loads(recipes.to_toml([r], config))["enqueue"]]
    assert entry["_published"][0]["metrics"]["pearson"] == 0.8473 and entry["learning_rate"] == 0.0001


def test_a_study_file_that_does_not_name_temperature_works_for_every_task_kind(tmp_path):
    """Issue 28: a regression study without a temperature was refused for the registry's default range, which the
    user never wrote. A kind without a temperature does not search it; one the user searched is still refused."""
    from searcher.config import Fixed, FloatRange, load_study
    from searcher.errors import ConfigError
    from searcher.search import space
    from searcher.search.prepare import with_task

    def study(name, task=None, temperature=None):
        lines = ["[study]", f'name = "{name}"', "[data]", 'train = "t.csv"', 'validation = "v.csv"',
                 *([f'task = "{task}"'] if task else []), "[teacher]", 'model = "some/teacher"', "[student]",
                 "layers = [2]", "hidden = [128]",
                 *(["[search]", f"temperature = {temperature}"] if temperature else [])]
        path = tmp_path / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    for kind in tasks.KINDS:
        config = load_study(study(kind.replace("_", "-"), task=kind))  # [data] task given: checked when read
        searched = space.searched_names(config)
        if tasks.KINDS[kind].uses_temperature:
            assert isinstance(config.search.temperature, FloatRange) and "temperature" in searched
        else:
            assert isinstance(config.search.temperature, Fixed) and "temperature" not in searched
        inferred = with_task(load_study(study(f"auto-{kind}".replace("_", "-"))), kind)  # inferred from the data
        assert ("temperature" in space.searched_names(inferred)) == tasks.KINDS[kind].uses_temperature
    with pytest.raises(ConfigError, match=r"\[search\] temperature does not apply to text regression"):
        load_study(study("searched", task="regression", temperature="[1.0, 4.0]"))
    with pytest.raises(ConfigError, match=r"\[search\] temperature does not apply to text regression"):
        with_task(load_study(study("searched-auto", temperature="[1.0, 4.0]")), "regression")
    assert isinstance(load_study(study("fixed", task="regression", temperature="2.0")).search.temperature, Fixed)


def test_searcher_space_of_an_inferred_kind_is_the_space_its_trials_use(world, tmp_path, cli):
    """`searcher space` listed the default temperature range for a study whose data made it a regression (so
    `optuna ask --search-space` created trials with a parameter the study never asks): the kind is inferred first."""
    (tmp_path / "r").mkdir()
    (tmp_path / "m").mkdir()
    code, out, _ = cli("space", task_study(world, tmp_path / "r", "regression"))
    assert code == 0 and "temperature" not in json.loads(out) and "learning_rate" in json.loads(out)
    code, out, _ = cli("space", task_study(world, tmp_path / "m", "multi_label"))
    assert code == 0 and "temperature" in json.loads(out)


def test_absurdly_large_scores_are_refused_when_the_data_is_read():
    """Issue 28: a score of 1e308 became inf in float32 and the trial was pruned blaming the learning rate."""
    kind = tasks.kind("regression")
    for value in (1e308, -3.5e38, 1e16):
        with pytest.raises(DataError, match=r"holds .*, too large for a score .*rescale the scores"):
            kind.read_labels({"train": [1.0, 2.5], "validation": [0.5, value]}, DATA, None, None)
    names, labels = kind.read_labels({"train": [1.0, -2e14, 3.0]}, DATA, None, None)
    assert np.isfinite(labels["train"]).all()
    with pytest.raises(DataError, match="holds 'inf'; drop that row"):
        kind.read_labels({"train": [1.0, "inf"]}, DATA, None, None)


def test_a_threshold_tuned_on_a_small_validation_split_is_said_to_be_unreliable(world, tmp_path, caplog):
    """Issue 28: threshold = "tuned" on a handful of validation rows said nothing."""
    import logging

    from searcher import data
    from searcher.config import load_study

    path = task_study(world, tmp_path, "multi_label", data={"task": "multi_label", "threshold": "tuned"})
    with caplog.at_level(logging.INFO, logger="searcher"):
        task = data.load_task(load_study(path))
    assert len(task.validation) == 48
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "tuned on 48 validation rows" in
              r.getMessage()]
    assert len(warned) == 1 and "set [data] threshold to a number" in warned[0].getMessage()
    caplog.clear()
    (tmp_path / "fixed").mkdir()
    path = task_study(world, tmp_path / "fixed", "multi_label", data={"task": "multi_label", "threshold": 0.4})
    with caplog.at_level(logging.INFO, logger="searcher"):
        data.load_task(load_study(path))
    assert not [r for r in caplog.records if "validation rows" in r.getMessage()]


def test_what_differs_by_kind_is_asked_of_the_kind_never_of_its_name():
    """Issue 28: 11 comparisons on kind names outside searcher/tasks (ensemble combine, teacher heads, the card's
    pipeline tag, the template, rules) made a new kind touch up to 9 files. No module or template names a kind now."""
    from pathlib import Path

    root = Path(tasks.__file__).resolve().parents[1]
    names = [f"{q}{name}{q}" for name in tasks.KINDS for q in "\"'"]
    found = [f"{path.relative_to(root.parent)}: {name}" for path in [*root.rglob("*.py"),
                                                                      *(root.parent / "templates").glob("*.j2")]
             if tasks.__file__.rsplit("/", 1)[0] not in str(path) for name in names if name in path.read_text()]
    assert not found
