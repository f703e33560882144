"""Static-embedding students (searcher.train.static): the distilled table, the module, Model2Vec's layout, the cache,
and a study that searches the bert and static families side by side."""

import json
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch

from conftest import TOKEN, make_bert, make_tokenizer
from searcher.config import load_study
from searcher.errors import ConfigError
from searcher.search import space
from searcher.train import static


def tiny_task(kind="single_label_classification", labels=("neg", "pos")):
    names = list(labels)
    return SimpleNamespace(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
                           kind=SimpleNamespace(problem_type=kind), num_labels=len(names))


def test_table_is_pca_of_token_outputs_with_sif_weights():
    tok, bert = make_tokenizer(), make_bert(hidden=64)
    outputs = static.token_outputs(bert, tok)
    assert outputs.shape == (len(tok), 64)
    table = static.table_from_outputs(outputs, 16)
    assert table.shape == (len(tok), 16) and table.dtype == np.float32
    # a row is its token's PCA scores times its SIF weight: frequent (low-id) tokens weigh less than rare ones
    weights = static.sif_weights(len(tok))
    assert np.all(np.diff(weights) > 0)
    np.testing.assert_allclose(table / weights[:, None], static.pca(outputs, 16), rtol=1e-4, atol=1e-5)
    with pytest.raises(static.StaticError, match="larger than the base's hidden size 64"):
        static.pca(outputs, 65)


def test_a_token_is_encoded_inside_its_tokenizers_special_tokens():
    tok = make_tokenizer()
    assert static.special_frame(tok) == ([tok.cls_token_id], [tok.sep_token_id])


@pytest.mark.parametrize("kind,labels", [("single_label_classification", ("neg", "pos")),
                                         ("multi_label_classification", ("a", "b", "c")),
                                         ("regression", ("score",))])
@pytest.mark.parametrize("head", static.HEADS)
def test_saved_student_loads_in_model2vec_and_predicts_the_same(tmp_path, head, kind, labels):
    from model2vec.inference import StaticModelPipeline

    tok = make_tokenizer()
    table = static.table_from_outputs(static.token_outputs(make_bert(hidden=64), tok), 16)
    model = static.build(table, tok, tiny_task(kind, labels), head, True, 32, "tiny")
    with torch.no_grad():
        for p in model.head.parameters():
            p.normal_()  # a trained-looking head, not the near-zero initial one
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    texts = ["a good film", "bad movie zzzunknown", "", "good good bad"]
    assert static.check_loads(tmp_path, texts, model, tok)["ok"]
    pipeline = StaticModelPipeline.from_pretrained(tmp_path)
    predicted = pipeline.predict(texts)
    assert len(predicted) == len(texts)
    if kind == "single_label_classification":
        assert set(predicted) <= set(labels)
    back = static.load(tmp_path)
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(back(**enc).logits, model(**enc).logits)
    assert back.num_parameters() == model.num_parameters()


def test_special_and_unknown_tokens_stay_out_of_the_mean():
    tok = make_tokenizer()
    model = static.build(np.random.default_rng(0).normal(size=(len(tok), 8)).astype(np.float32), tok, tiny_task(),
                         "linear", True, 32, "tiny")
    plain = tok(["good film"], add_special_tokens=False, return_tensors="pt")["input_ids"]
    framed = tok(["good film zzzunknown"], return_tensors="pt")  # [CLS] good film [UNK] [SEP]
    assert torch.allclose(model.pooled(framed["input_ids"], framed["attention_mask"]),
                          model.embed(plain).mean(dim=1))


def test_frozen_embeddings_do_not_train():
    tok = make_tokenizer()
    model = static.build(np.ones((len(tok), 8), np.float32), tok, tiny_task(), "mlp", False, 32, "tiny")
    assert not model.embed.weight.requires_grad
    assert all(p.requires_grad for p in model.head.parameters())
    assert model.supports_cohorts is False


def test_table_cache_is_built_once_and_rebuilt_when_damaged(tmp_path, caplog):
    calls = []

    def outputs():
        calls.append(1)
        return np.random.default_rng(0).normal(size=(40, 24)).astype(np.float32)

    path = static.table_path(tmp_path, "base", "tok", 8)
    first = static.cached_table(path, 40, 8, outputs, "a base")
    again = static.cached_table(path, 40, 8, outputs, "a base")
    assert len(calls) == 1 and np.array_equal(first, again)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # a flipped byte in the table
    path.write_bytes(bytes(raw))
    with caplog.at_level("INFO"):
        rebuilt = static.cached_table(path, 40, 8, outputs, "a base")
    assert len(calls) == 2 and np.array_equal(first, rebuilt)
    assert "damaged" in caplog.text.lower() or "rebuil" in caplog.text.lower()


# ---- config and search space ----------------------------------------------------------------------------------

BOTH = {"family": ["bert", "static"], "static_dim": [8, 16], "static_head": ["linear", "mlp"],
        "static_train_embeddings": [True, False]}


def test_static_parameters_are_conditional_on_the_family(world, tmp_path):
    config = load_study(world.study(tmp_path, student=BOTH))
    dists = space.distributions(config)
    assert {"family", "static_dim", "static_head", "static_train_embeddings", "layers"} <= set(dists)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        plan = space.suggest(trial, config)
        family = trial.params["family"]
        seen.add(family)
        if family == "static":
            assert "layers" not in trial.params and "init" not in trial.params
            assert plan.student.static and plan.student.static_dim in (8, 16)
        else:
            assert not any(k.startswith("static_") for k in trial.params)
            assert not plan.student.static
        study.tell(trial, 0.5)
    assert seen == {"bert", "static"}


@pytest.mark.parametrize("student,match", [
    ({"family": ["bert", "lstm"]}, "family must be one of 'bert', 'static', got 'lstm'"),
    ({"family": ["bert"], "static_dim": [8]}, "static_dim is a setting of the 'static' family"),
    ({"family": ["static"], "static_dim": [0], "layers": None, "hidden": None, "init": None},
     "static_dim must be a list of integers"),
])
def test_bad_family_settings_are_one_line(world, tmp_path, student, match):
    with pytest.raises(ConfigError, match=match):
        load_study(world.study(tmp_path, student=student))


def test_static_refuses_layer_wise_losses(world, tmp_path):
    with pytest.raises(ConfigError, match="a static student has no layers"):
        load_study(world.study(tmp_path, student=BOTH, distill={"losses": ["logits", "hidden_mse"]}))


def test_static_settings_define_the_study(world, tmp_path):
    from searcher.config import defining

    a = defining(load_study(world.study(tmp_path, student=BOTH)))
    b = defining(load_study(world.study(tmp_path, student={**BOTH, "static_dim": [8]})))
    assert a["[student] static_dim"] != b["[student] static_dim"]
    assert "[student] family" in a


@pytest.mark.parametrize("student,match", [
    ({"family": ["static"], "static_dim": [65]}, "static_dim 65 is larger than the hidden size 64 of the teacher"),
])
def test_static_checks_against_the_base_exit_2_before_anything_is_written(world, tmp_path, cli, student, match):
    path = world.study(tmp_path, student={**student, "layers": None, "hidden": None, "init": None})
    code, _, err = cli("optimize", path)
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "tiny.db").exists()


def test_a_decoder_base_is_refused(world, tmp_path, cli):
    from transformers import GPT2Config, GPT2Model

    base = tmp_path / "gpt2"
    GPT2Model(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=40)).save_pretrained(base)
    path = world.study(tmp_path, student={"family": ["static"], "static_dim": [8], "static_base": str(base),
                                          "layers": None, "hidden": None, "init": None})
    code, _, err = cli("optimize", path)
    assert code == 2 and "not an encoder" in err
    assert not (tmp_path / "tiny.db").exists()


def test_missing_model2vec_is_one_line(world, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(static, "available", lambda: False)
    path = world.study(tmp_path, student={"family": ["static"], "static_dim": [8], "layers": None, "hidden": None,
                                          "init": None})
    code, _, err = cli("optimize", path)
    assert code == 2 and "model2vec is not installed" in err
    assert not (tmp_path / "tiny.db").exists()


# ---- a study of both families -----------------------------------------------------------------------------------

def test_study_searches_both_families_and_saves_model2vec_students(world, tmp_path, cli, caplog):
    from model2vec.inference import StaticModelPipeline

    path = world.study(tmp_path, study={"n_trials": 6, "objectives": ["accuracy", "latency_ms"], "directions": ["maximize", "minimize"]},
                       student={**BOTH, "init": "random"},
                       enqueue=[{"family": "static", "static_dim": 16, "static_head": "mlp",
                                 "static_train_embeddings": True},
                                {"family": "static", "static_dim": 8, "static_head": "linear",
                                 "static_train_embeddings": False},
                                {"family": "bert", "layers": 1, "init": "random", "hidden": 64}])
    with caplog.at_level("INFO"):
        code, out, err = cli("optimize", path)
    assert code == 0, err
    assert caplog.text.count("distilling a") == 2  # one table per dimension, once
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    statics = [t for t in done if t.params.get("family") == "static"]
    assert statics and any(t.params.get("family") == "bert" for t in done)
    for t in statics:
        s = t.user_attrs["student"]
        assert s["family"] == "static" and s["model_type"] == "model2vec" and s["layers"] == 0
        assert s["hidden"] == t.params["static_dim"]
        assert t.user_attrs["latency_ms"]["single_median"] > 0
        folder = tmp_path / "tiny" / "models" / f"trial-{t.number:04d}"
        if folder.is_dir():
            cfg = json.loads((folder / "config.json").read_text())
            assert cfg["model_type"] == "model2vec" and cfg["head_config"]["classes"] == ["neg", "pos"]
            predicted = StaticModelPipeline.from_pretrained(folder).predict(["a good film", "a bad film"])
            assert set(predicted) <= {"neg", "pos"}
    # a second run reads the cached tables
    caplog.clear()
    path2 = world.study(tmp_path / "again", student={**BOTH, "init": "random"}, study={"n_trials": 1})
    with caplog.at_level("INFO"):
        assert cli("optimize", path2)[0] == 0
    assert "distilling a" not in caplog.text


def test_static_students_asked_as_a_cohort_train_alone_and_give_what_they_give_alone(world, tmp_path, cli):
    """[train] cohort = 2 with two static trials of one shape: they form a group, cannot be stacked
    (supports_cohorts = False), and each trains alone: the same values as with cohort = 1, and no cohort record."""
    trials = [{"family": "static", "static_dim": 8, "static_head": "linear", "static_train_embeddings": False,
               "learning_rate": lr} for lr in (2e-3, 5e-3)]
    values = {}
    for size in (1, 2):
        path = world.study(tmp_path / str(size), study={"n_trials": 2},
                           student={"family": ["static"], "static_dim": [8], "static_head": ["linear"],
                                    "static_train_embeddings": [False], "layers": None, "hidden": None,
                                    "init": None},
                           train={"cohort": size, "latency": False}, enqueue=trials)
        code, out, err = cli("optimize", path)
        assert code == 0, err
        study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / str(size)}/tiny.db")
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
        assert not any("cohort" in t.user_attrs for t in study.trials)
        values[size] = [t.value for t in study.trials]
    assert values[2] == pytest.approx(values[1], abs=1e-6)


# ---- card, Hub, import ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def static_study(world, tmp_path_factory):
    from searcher.cli import main

    directory = tmp_path_factory.mktemp("static")
    path = world.study(directory, name="tiny", study={"n_trials": 2, "keep_best": 2},
                       student={"family": ["static"], "static_dim": [8, 16], "static_head": ["linear", "mlp"],
                                "layers": None, "hidden": None, "init": None},
                       hub={"repo_id": "acme/{study}-static-t{trial}"})
    assert main(["-q", "optimize", str(path)]) == 0
    return path


def test_static_card_push_and_load_back_from_the_hub(static_study, hub, cli, tmp_path):
    from model2vec.inference import StaticModelPipeline

    study = optuna.load_study(study_name="tiny", storage=load_study(static_study).storage_url())
    best = study.best_trial
    code, _, err = cli("card", static_study, "--trial", best.number, "--out", tmp_path / "cards")
    assert code == 0, err
    card = next((tmp_path / "cards").rglob("README.md")).read_text()
    assert "StaticModelPipeline.from_pretrained(" in card and "library_name: model2vec" in card
    assert "static-embedding student" in card and "from transformers import pipeline" not in card
    code, out, err = cli("push", static_study)
    assert code == 0, err
    (repo_id,) = list(hub.repos)
    files = set(hub.repos[repo_id].head.files)
    assert {"model.safetensors", "head.safetensors", "config.json", "tokenizer.json", "README.md"} <= files
    pipeline = StaticModelPipeline.from_pretrained(repo_id, token=TOKEN)
    assert set(pipeline.predict(["a good film", "a bad film"])) <= {"neg", "pos"}

    # searcher import of that card brings the static student's settings back as an [[enqueue]] block
    readme = tmp_path / "README.md"
    readme.write_bytes(hub.repos[repo_id].head.files["README.md"])
    from searcher import recipes

    (recipe,) = recipes.read(str(readme))
    assert recipe.values["family"] == "static"
    for key in ("static_dim", "static_head", "static_train_embeddings"):
        assert recipe.values[key] == best.params.get(key, best.user_attrs["student"][key]), key
    text = recipes.to_toml([recipe], load_study(static_study))
    assert "static_dim" in text and recipes.conflicts([recipe], load_study(static_study)) == []


def test_warm_start_of_a_bert_study_into_a_study_of_both_families(world, tmp_path):
    """Trials recorded before student families (no family param) are bert trials of a study that searches both."""
    from searcher.search import warmstart

    config = load_study(world.study(tmp_path, student=BOTH))
    dims, dists = space.dimensions(config), space.distributions(config)
    old = optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, value=0.8,
        params={"learning_rate": 3e-3, "batch_size": 8, "temperature": 2.0, "alpha": 0.5, "layers": 2},
        distributions={"learning_rate": optuna.distributions.FloatDistribution(2e-3, 6e-3),
                       "batch_size": optuna.distributions.CategoricalDistribution([8, 16]),
                       "temperature": optuna.distributions.FloatDistribution(1.0, 4.0),
                       "alpha": optuna.distributions.FloatDistribution(0.0, 1.0),
                       "layers": optuna.distributions.CategoricalDistribution([1, 2])},
        user_attrs={"student": {"layers": 2, "hidden": 64, "init": "random"}})
    params, dropped, why = warmstart.convert(old, dims, dists)
    assert why is None and params["family"] == "bert" and params["layers"] == 2
    assert not any(k.startswith("static_") for k in params)
    static_trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, value=0.7, params={**old.params, "family": "static"},
        distributions={**old.distributions, "family": optuna.distributions.CategoricalDistribution(["bert", "static"])},
        user_attrs={"student": {"family": "static", "static_dim": 16, "static_head": "mlp",
                                "static_train_embeddings": True, "layers": 0, "hidden": 16, "init": "static"}})
    params, _, why = warmstart.convert(static_trial, dims, dists)
    assert why is None and params["static_dim"] == 16 and "layers" not in params
    bert_only = load_study(world.study(tmp_path / "b"))
    _, _, why = warmstart.convert(static_trial, space.dimensions(bert_only), space.distributions(bert_only))
    assert why is not None


@pytest.mark.parametrize("kind_name,labels", [("regression", ("score",)), ("multi_label", ("a", "b", "c")),
                                              ("single_label", ("neg", "pos"))])
def test_static_students_learn_every_task_kind_from_teacher_logits(kind_name, labels):
    """The distill loop trains a static student unchanged, with each kind's logit loss."""
    from searcher import tasks
    from searcher.data.tokens import Encoded
    from searcher.hyperparams import Hyperparams
    from searcher.tasks.metrics import MetricSet
    from searcher.train import distill, runtime

    kind = tasks.kind(kind_name)
    tok = make_tokenizer()
    rng = np.random.default_rng(0)
    texts = ["good film", "bad film", "a good good movie", "bad bad", "fine film", "good"] * 4
    ids = tok(texts)["input_ids"]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in ids])])
    flat = np.concatenate([np.asarray(x, dtype=np.int32) for x in ids])
    n = len(texts)
    labels_ = (rng.normal(size=n).astype(np.float32) if kind_name == "regression" else
               (rng.random((n, len(labels))) > 0.5).astype(np.float32) if kind_name == "multi_label" else
               rng.integers(0, len(labels), n))
    enc = Encoded(flat, np.zeros_like(flat, dtype=np.int8), offsets, labels_, 0)
    teacher = rng.normal(size=(n, len(labels))).astype(np.float32)
    model = static.build(rng.normal(size=(len(tok), 8)).astype(np.float32), tok,
                         tiny_task(kind.problem_type, labels), "mlp", True, 32, "tiny")
    before = model.embed.weight.detach().clone()
    hp = Hyperparams(learning_rate=1e-2, batch_size=8, temperature=2.0, alpha=0.5, epochs=2, seed=0)
    results = distill.train(model, enc, teacher, enc, teacher, hp, runtime.resolve("cpu", "off"),
                            metrics=MetricSet([], kind))
    assert len(results) == 2 and np.isfinite(results[-1].train_loss)
    assert not torch.equal(before, model.embed.weight)  # the table trained with the head


def test_the_leaderboard_names_static_students(static_study, cli):
    code, out, err = cli("best", static_study)
    assert code == 0, err
    assert "static/D" in out and "L0/H" not in out
