"""Transfer-set distillation: unlabeled and augmented text, labelled once by the cached teacher, the distillation term
only on those rows, evaluation sentences never leaked, one cache for every number of copies."""

import csv
import random

import numpy as np
import optuna
import pytest
import torch
import torch.nn.functional as F

from conftest import BAD, GOOD, NEUTRAL, sentence, write_rows
from searcher.train import distill
from searcher.teachers import logits as teacher_logits
from searcher.data.rows import StackedLogits
from searcher.config import load_study
from searcher.data.loading import UNLABELED


def load(path):
    c = load_study(path)
    return optuna.load_study(study_name=c.study.name, storage=c.storage_url())


def transfer_file(world, tmp_path, n=120, leak=()):
    """Unlabeled sentences in the tiny task's words, plus `leak`: copies of evaluation rows in other case/spacing."""
    rng = random.Random(5)
    rows = [[sentence(rng, rng.randint(0, 1))] for _ in range(n)] + [[t] for t in leak]
    return write_rows(tmp_path / "transfer.csv", ["text"], rows)


def validation_texts(world):
    with open(world.data / "validation.csv") as f:
        return [row[0] for row in list(csv.reader(f))[1:]]


def test_unlabeled_rows_carry_the_distillation_term_alone():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    y = torch.tensor([0, 2, 1, UNLABELED, UNLABELED, UNLABELED])
    alpha, temp = 0.3, 2.0
    loss = distill.kd_loss(s, t, y, alpha, temp)
    kl = F.kl_div(F.log_softmax(s / temp, -1), F.softmax(t / temp, -1), reduction="none").sum(-1)
    ce = F.cross_entropy(s[:3], y[:3], reduction="sum")
    assert torch.allclose(loss, alpha * ce + (1 - alpha) * temp ** 2 * kl.sum(), atol=1e-5)
    only_unlabeled = distill.kd_loss(s[3:], t[3:], y[3:], alpha, temp)
    assert torch.allclose(only_unlabeled, (1 - alpha) * temp ** 2 * kl[3:].sum(), atol=1e-5)
    assert distill.kd_loss(s[3:], t[3:], y[3:], 1.0, temp) == 0  # alpha = 1 ignores the teacher, so transfer text


def test_stacked_rows_read_each_part_in_place(tmp_path):
    memmap = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float16, shape=(5, 2))
    memmap[:] = np.arange(10).reshape(5, 2)
    stacked = StackedLogits([np.full((3, 2), -1.0, np.float32), np.load(tmp_path / "x.npy", mmap_mode="r")])
    assert len(stacked) == 8
    assert stacked[np.array([6, 0, 3])].tolist() == [[6.0, 7.0], [-1.0, -1.0], [0.0, 1.0]]


def test_a_transfer_set_is_labelled_once_never_leaks_and_trains_the_students(world, tmp_path, cli, monkeypatch):
    leaks = [t.upper() + "  " for t in validation_texts(world)[:3]] + [" " + validation_texts(world)[3]]
    path = world.study(tmp_path, study={"n_trials": 2, "cache_dir": str(tmp_path / "cache")},
                       data={"transfer": str(transfer_file(world, tmp_path, leak=leaks))})
    calls = []
    real = teacher_logits.compute_logits
    monkeypatch.setattr(teacher_logits, "compute_logits", lambda m, enc, *a: calls.append(len(enc)) or real(m, enc, *a))
    code, out, err = cli("optimize", path)
    assert code == 0, err
    assert "removed 4 transfer rows that are also validation or test sentences" in err
    assert calls.count(120) == 1  # the teacher labels the transfer text once, for every trial
    study = load(path)
    assert study.user_attrs["dataset"]["transfer"]["rows"] == 120
    assert study.user_attrs["dataset"]["transfer"]["removed_overlap"] == 4
    for t in study.trials:
        assert t.user_attrs["training_rows"] == {"labeled": 192, "transfer": 120, "augmented": 0}
        assert t.user_attrs["history"]["step"][0] == -(-312 // t.params["batch_size"])  # an epoch covers both
    extra = next((tmp_path / "cache" / "logits").glob("transfer-*.npy"))
    logits = np.load(extra, mmap_mode="r")
    assert isinstance(logits, np.memmap) and logits.dtype == np.float16 and logits.shape == (120, 2)
    assert "192+120" in out  # the leaderboard's rows column
    code, out, err = cli("card", path, "--best", "--out", tmp_path / "cards")
    text = (tmp_path / "cards" / f"trial-{study.best_trial.number:04d}" / "README.md").read_text()
    assert ("- Trained on 192 labeled + 120 teacher-labeled sentences (120 transfer text); those carry the "
            "distillation term only; 4 transfer sentences were removed because they are also evaluation "
            "sentences") in text


def test_augmented_copies_share_one_cache_across_trials(world, tmp_path, cli, monkeypatch):
    path = world.study(tmp_path, study={"n_trials": 3, "cache_dir": str(tmp_path / "cache")},
                       search={"augment": [0, 2]}, data={"augment": {"p_mask": 0.2, "p_swap": 0.2}},
                       enqueue=[{"augment": 0}, {"augment": 1}, {"augment": 2}])
    calls = []
    real = teacher_logits.compute_logits
    monkeypatch.setattr(teacher_logits, "compute_logits", lambda m, enc, *a: calls.append(len(enc)) or real(m, enc, *a))
    code, out, err = cli("optimize", path)
    assert code == 0, err
    study = load(path)
    rows = {t.params["augment"]: t.user_attrs["training_rows"]["augmented"] for t in study.trials}
    assert rows[0] == 0 and 0 < rows[1] < rows[2] <= 2 * 192
    cached = np.load(next((tmp_path / "cache" / "logits").glob("augmented-*.npy")), mmap_mode="r")
    assert len(cached) == rows[2] and calls.count(rows[2]) == 1  # built once, for the most copies asked
    header = next(line for line in out.splitlines() if line.startswith("rank"))
    assert " augment " in header and " rows " in header  # searched: a leaderboard column; rows trained on


def test_pairs_are_augmented_on_both_sides_and_transfer_pairs_work(world, tmp_path, cli):
    transfer = write_rows(tmp_path / "pairs.tsv", ["a", "b"],
                          [[sentence(random.Random(i), 1), sentence(random.Random(i + 99), 0)] for i in range(40)],
                          delimiter="\t")
    path = world.study(tmp_path, study={"n_trials": 1},
                       data={"train": str(world.data / "pairs_train.tsv"),
                             "validation": str(world.data / "pairs_dev.tsv"),
                             "text_columns": ["sentence1", "sentence2"], "transfer": str(transfer),
                             "transfer_text_columns": ["a", "b"]},
                       # one epoch on the tiny pairs leaves the teacher at the majority class: it only has to
                       # label the pairs here
                       teacher={"model": None, "base": str(world.base),
                                "fine_tune": {"epochs": 1, "batch_size": 8, "learning_rate": 2e-3,
                                              "allow_baseline": True}},
                       search={"augment": 1})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    t = load(path).trials[0]
    assert t.user_attrs["training_rows"]["transfer"] == 40 and t.user_attrs["training_rows"]["augmented"] > 0


def test_augmentation_that_changes_nothing_trains_on_the_labelled_rows_with_one_warning(world, tmp_path, cli):
    """All probabilities 0: every copy equals its sentence, so there are no copies to label (once an IndexError)."""
    path = world.study(tmp_path, study={"n_trials": 1, "cache_dir": str(tmp_path / "cache")}, search={"augment": 1},
                       data={"augment": {"p_mask": 0.0, "p_swap": 0.0, "p_ngram": 0.0}})
    code, out, err = cli("optimize", path)
    assert code == 0 and "Traceback" not in err, err
    warnings = [line for line in err.splitlines() if "0 distinct copies" in line]
    assert len(warnings) == 1 and "trains on the labelled rows alone" in warnings[0], err
    assert "[data.augment]" in warnings[0] and "[search] augment = 0" in warnings[0]
    t = load(path).trials[0]
    assert t.state == optuna.trial.TrialState.COMPLETE
    assert t.user_attrs["training_rows"] == {"labeled": 192, "transfer": 0, "augmented": 0}


def test_a_changed_transfer_file_is_refused_before_the_teacher_labels_it(world, tmp_path, cli, monkeypatch):
    transfer = transfer_file(world, tmp_path, n=20)
    path = world.study(tmp_path, study={"n_trials": 1, "cache_dir": str(tmp_path / "cache")},
                       data={"transfer": str(transfer)}, search={"epochs": 1})
    assert cli("optimize", path)[0] == 0
    transfer.write_text(transfer.read_text() + "".join(f"a film very good {i}\n" for i in range(30)))
    calls = []
    monkeypatch.setattr(teacher_logits, "compute_logits", lambda *a, **k: calls.append(1) or pytest.fail("labelled"))
    code, _, err = cli("optimize", path)
    errors = [line for line in err.splitlines() if line.startswith("searcher: error:")]
    assert code == 2 and len(errors) == 1 and "[data] transfer content" in errors[0], err
    assert "use a new [study] name" in errors[0] and not calls and "labelling" not in err


@pytest.mark.parametrize("change, message", [
    ({"data": {"transfer": "EMPTY"}}, "has no non-empty text"),
    ({"data": {"transfer": "TRANSFER", "transfer_text_columns": ["sentence"]}}, "has no column 'sentence'"),
    ({"data": {"augment": {"p_mask": 1.5}}}, "[data.augment] p_mask is a probability"),
    ({"data": {"augment": {"p_mask": 0.6, "p_swap": 0.6}}}, "p_mask + p_swap = 1.2 must be at most 1"),
    ({"search": {"augment": 100}}, "[search] augment must lie in [0, 32]"),
    ({"data": {"transfer": "LEAK"}}, "every row of the transfer data"),
])
def test_bad_transfer_input_is_one_line_and_writes_nothing(world, tmp_path, cli, change, message):
    files = {"EMPTY": write_rows(tmp_path / "empty.csv", ["text"], [[""], ["  "]]),
             "TRANSFER": transfer_file(world, tmp_path),
             "LEAK": write_rows(tmp_path / "leak.csv", ["text"], [[t] for t in validation_texts(world)])}
    data = change.get("data", {})
    if data.get("transfer") in files:
        data["transfer"] = str(files[data["transfer"]])
    path = world.study(tmp_path / "s", **change)
    code, _, err = cli("optimize", path)
    assert code == 2 and message in err and err.count("searcher: error") == 1, err
    assert not (tmp_path / "s" / "tiny.db").exists() and not (tmp_path / "s" / "tiny").exists()


def test_words_of_the_tiny_task_are_what_augmentation_swaps_in():
    from searcher.data import augment

    texts = ((" ".join(GOOD[:3] + NEUTRAL[:2]), " ".join(BAD[:4])),)
    settings = augment.AugmentSettings(seed=1, p_mask=0.0, p_swap=1.0, p_ngram=0.0)
    (copies,) = augment.copies(texts, 1, settings)
    vocabulary = set(" ".join(texts[0]).split())
    assert all(w in vocabulary for row in copies for w in row.split())
