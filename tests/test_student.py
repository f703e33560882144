"""Students: the miniature grid (pretrained checkpoints), teacher-initialised and random students, checkpoint lists."""

import json

import optuna
import pytest
import torch

from conftest import make_bert, make_tokenizer
from searcher import data
from searcher.search import space
from searcher.train import student
from searcher.config import load_study
from searcher.errors import StudentError


def task_of(world, tmp_path):
    return data.load_task(load_study(world.study(tmp_path)))


def test_evenly_spread_layers():
    assert student.evenly_spread(12, 6) == [1, 3, 5, 7, 9, 11]
    assert student.evenly_spread(6, 2) == [2, 5]
    assert student.evenly_spread(6, 6) == list(range(6))
    with pytest.raises(StudentError, match="use layers <= 6"):
        student.evenly_spread(6, 8)


def test_teacher_init_copies_embeddings_and_spread_layers(world, tmp_path):
    task = task_of(world, tmp_path)
    teacher = make_bert(layers=4, seed=3, labels=["neg", "pos"])
    tok = make_tokenizer()
    model, tokenizer = student.build(student.StudentSpec("teacher", layers=2), task, teacher, tok)
    t, s = teacher.state_dict(), model.state_dict()
    assert torch.equal(s["bert.embeddings.word_embeddings.weight"], t["bert.embeddings.word_embeddings.weight"])
    # 4 -> 2 layers keeps teacher layers 1 and 3
    assert torch.equal(s["bert.encoder.layer.0.attention.self.query.weight"],
                       t["bert.encoder.layer.1.attention.self.query.weight"])
    assert torch.equal(s["bert.encoder.layer.1.output.dense.weight"], t["bert.encoder.layer.3.output.dense.weight"])
    assert torch.equal(s["classifier.weight"], t["classifier.weight"])
    assert model.config.num_hidden_layers == 2 and model.config.id2label == {0: "neg", 1: "pos"}
    assert tokenizer is tok


def test_random_student_has_the_miniature_shape(world, tmp_path):
    task = task_of(world, tmp_path)
    model, _ = student.build(student.StudentSpec("random", layers=2, hidden=128), task, make_bert(), make_tokenizer())
    info = student.describe(model, student.StudentSpec("random", layers=2, hidden=128))
    assert (info["layers"], info["hidden"], info["heads"]) == (2, 128, 2)
    assert model.config.intermediate_size == 512
    assert info["params"] == sum(p.numel() for p in model.parameters())


def save_miniature(root, layers, hidden):
    m = make_bert(layers=layers, hidden=hidden, num_labels=5)  # a pretrained checkpoint with another head
    path = root / f"bert_L-{layers}_H-{hidden}_A-{hidden // 64}"
    m.save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return path


def test_grid_checkpoints_resolve_through_the_template(world, tmp_path, cli):
    """init = "pretrained" loads the grid's checkpoints with from_pretrained (Hub ids; local folders here)."""
    for layers in (1, 2):
        save_miniature(tmp_path / "hub", layers, 64)
    path = world.study(tmp_path, study={"n_trials": 2},
                       student={"init": "pretrained", "checkpoint": str(tmp_path / "hub" / "bert_L-{layers}_H-{hidden}_A-{heads}")})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    for t in study.trials:
        s = t.user_attrs["student"]
        assert s["checkpoint"] == str(tmp_path / "hub" / f"bert_L-{s['layers']}_H-64_A-1")
        cfg = json.loads((tmp_path / "tiny" / "models" / f"trial-{t.number:04d}" / "config.json").read_text())
        assert cfg["id2label"] == {"0": "neg", "1": "pos"}  # the 5-label head was replaced


def test_checkpoint_list_is_a_categorical_parameter(world, tmp_path):
    a, b = save_miniature(tmp_path, 1, 64), save_miniature(tmp_path, 2, 64)
    c = load_study(world.study(tmp_path, student={"checkpoints": [str(a), str(b)], "init": "pretrained",
                                                  "layers": None, "hidden": None}))
    dists = space.distributions(c)
    assert dists["checkpoint"].choices == (str(a), str(b))
    assert "layers" not in dists and "hidden" not in dists


def test_missing_checkpoint_is_a_clear_error(world, tmp_path, cli):
    path = world.study(tmp_path, student={"init": "pretrained", "checkpoint": str(tmp_path / "nope-{layers}-{hidden}")})
    code, _, err = cli("optimize", path)
    assert code == 2 and "cannot be loaded" in err and "nope-1-64" in err
    assert not (tmp_path / "tiny.db").exists()


def test_search_space_json_round_trips_through_optuna(world, tmp_path):
    from optuna.distributions import json_to_distribution

    c = load_study(world.study(tmp_path))
    parsed = json.loads(space.search_space_json(c))
    assert set(parsed) == {"learning_rate", "batch_size", "temperature", "alpha", "layers"}
    assert json_to_distribution(json.dumps(parsed["learning_rate"])).log is True
    assert json_to_distribution(json.dumps(parsed["batch_size"])).choices == (8, 16)


def test_one_study_can_search_random_and_teacher_initialised_students(world, tmp_path, cli):
    """init = ["random", "teacher"] is a categorical parameter; hidden is only searched for random students."""
    path = world.study(tmp_path, study={"n_trials": 6, "seed": 3},
                       student={"init": ["random", "teacher"], "layers": [1, 2], "hidden": [64, 128]})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    inits = {t.params["init"] for t in study.trials}
    assert inits == {"random", "teacher"}
    for t in study.trials:
        s = t.user_attrs["student"]
        assert s["init"] == t.params["init"]
        if s["init"] == "teacher":
            assert "hidden" not in t.params and s["hidden"] == 64  # the teacher's
        else:
            assert s["hidden"] == t.params["hidden"]
