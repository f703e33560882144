"""Data loading: local files and dataset ids, single sentences and pairs, int and string labels, the token cache."""

import numpy as np
import pytest

from conftest import make_tokenizer, write_rows
from searcher import data
from searcher.data import tokens
from searcher.config import load_study
from searcher.errors import ConfigError, DataError


def test_string_labels_are_mapped_once_in_sorted_order(world, tmp_path):
    task = data.load_task(load_study(world.study(tmp_path)))
    assert task.label_names == ("neg", "pos")
    assert set(np.unique(task.train.labels)) == {0, 1}
    assert task.description["sizes"] == {"train": 192, "validation": 64}


def test_label_order_from_the_teacher_wins(world, tmp_path):
    task = data.load_task(load_study(world.study(tmp_path)), label_order=["pos", "neg"])
    assert task.label_names == ("pos", "neg")


def test_sentence_pairs_from_tsv(world, tmp_path):
    c = load_study(world.study(tmp_path, data={"train": str(world.data / "pairs_train.tsv"),
                                               "validation": str(world.data / "pairs_dev.tsv"),
                                               "text_columns": ["sentence1", "sentence2"]}))
    task = data.load_task(c)
    assert task.label_names == ("entailment", "not_entailment")
    enc = tokens.encode(task.train, make_tokenizer(), 64, None, "")
    first = enc.input_ids[enc.offsets[0]:enc.offsets[1]]
    assert (first == 3).sum() == 2  # [SEP] twice: the pair was encoded as a pair
    assert enc.token_type_ids[enc.offsets[0]:enc.offsets[1]].max() == 1


def test_dataset_id_path_loads_splits(world, tmp_path):
    """[data] dataset goes through datasets.load_dataset(id): here a local folder stands in for a Hub id."""
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    for split in ("train", "validation"):
        (folder / f"{split}.csv").write_text((world.data / f"{split}.csv").read_text())
    c = load_study(world.study(tmp_path, data={"dataset": str(folder), "train": None, "validation": None}))
    task = data.load_task(c)
    assert len(task.train) == 192 and len(task.validation) == 64
    assert task.description["dataset"] == str(folder)


def test_holdout_moves_validation_to_test(world, tmp_path):
    c = load_study(world.study(tmp_path, data={"holdout": 32}))
    task = data.load_task(c)
    assert (len(task.train), len(task.validation), len(task.test)) == (160, 32, 64)
    train = set(task.train.texts[0]) & set(task.validation.texts[0])
    assert len(train) < 5  # disjoint rows (identical random sentences aside)


def test_exclude_labels_deduplicate_and_limits(world, tmp_path):
    rows = [["a good film", "pos"], ["a good film", "pos"], ["plot text", "plot"], ["bad film", "neg"],
            ["dull film", "neg"], ["fine film", "pos"]]
    write_rows(tmp_path / "t.csv", ["text", "label"], rows)
    c = load_study(world.study(tmp_path, data={"train": str(tmp_path / "t.csv"), "validation": None,
                                               "holdout": 1, "exclude_labels": ["plot"], "deduplicate": True}))
    task = data.load_task(c)
    assert task.label_names == ("neg", "pos")
    assert len(task.train) + len(task.validation) == 4


def test_package_source_locates_a_shipped_file():
    path = data.locate("package:optuna/optuna/version.py")
    assert path.is_file()
    with pytest.raises(DataError, match="pip install --no-deps no-such-dist"):
        data.locate("package:no-such-dist/x.csv")


@pytest.mark.parametrize("change, message", [
    ({"train": "missing.csv"}, "does not exist; fix the path"),
    ({"label_column": "stars"}, "has no column 'stars'"),
    ({"text_columns": ["body"]}, "has no column 'body'"),
    ({"train": "notes.txt"}, "unsupported file type '.txt'"),
])
def test_data_errors_name_the_fix(world, tmp_path, change, message):
    (tmp_path / "notes.txt").write_text("x")
    c = load_study(world.study(tmp_path, data=change))
    with pytest.raises(DataError, match=message):
        data.load_task(c)


def test_holdout_with_test_split_is_refused(world, tmp_path):
    c = load_study(world.study(tmp_path, data={"holdout": 10, "test": str(world.data / "test.csv")}))
    with pytest.raises(ConfigError, match="remove one"):
        data.load_task(c)
