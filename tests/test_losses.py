"""Distillation losses (searcher.losses): the shared promises (searcher.testing.losses) over every registered loss (as
optuna tests its samplers), then an independent reference computation for each loss on tiny tensors, then the
layer maps and the study-file side.

The references are written out loop by loop in numpy, not with the code under test.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from searcher import hyperparams
from searcher.errors import ConfigError
from searcher.losses import LOSSES, layers

from searcher.testing.losses import B, LENGTHS, STUDENT, TEACHER, LossPromises, hp, loss_for, side, total

LABELS = torch.tensor([0, 2, -1])  # the last row only the teacher labels


# ---------------------------------------------------------------------------------------------------------------
# The shared promises (searcher.testing.losses), for every registered loss


class TestEveryLoss(LossPromises):
    @pytest.fixture(params=list(LOSSES))
    def loss_class(self, request):
        return LOSSES[request.param]


def test_a_loss_trains_in_the_stage_it_declares_not_by_its_class():
    from searcher.losses import DistillationLoss, LogitKD
    from searcher.train.distill import recipe, stage_losses

    class SecondLogitLoss(DistillationLoss):  # a second logit-level loss: not a LogitKD, trains with the predictions
        name, title, reads, stage = "logits_mse", "MSE on the logits", "logits", "logits"

        def terms(self, student, teacher, batch):
            return {self.name: ((student.logits - teacher.logits) ** 2).sum()}

    assert {cls.stage for cls in LOSSES.values()} == {"logits", "layers"}
    assert LOSSES["logits"].stage == "logits" and all(
        cls.stage == "layers" for name, cls in LOSSES.items() if cls.reads != "logits")
    logit, second, hidden = LogitKD(), SecondLogitLoss(), LOSSES["hidden_mse"]()
    both = [logit, second, hidden]
    assert stage_losses(both, 1, intermediate_epochs=1) == [hidden]
    assert stage_losses(both, 2, intermediate_epochs=1) == [logit, second]
    assert stage_losses(both, 1, intermediate_epochs=0) == both
    # the recipe names each weight by its parameter, as the records and [search] do (not an alias)
    assert "hidden_weight * " in recipe(both)["loss"] and "hidden_mse_weight" not in recipe(both)["loss"]


# ---------------------------------------------------------------------------------------------------------------
# References: each loss computed independently, example by example, token by token


def np_(x) -> np.ndarray:
    return x.detach().double().numpy()


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def test_hidden_mse_reference():
    loss = loss_for(LOSSES["hidden_mse"])
    s, t = side(STUDENT, 1), side(TEACHER, 2)
    assert loss.pairs_in_use == [(0, 0), (1, 2), (2, 4)]  # TinyBERT's uniform map, k = 4 / 2, embeddings 0 <- 0
    w, bias = np_(loss.projection.weight), np_(loss.projection.bias)
    expected = 0.0
    for ls, lt in loss.pairs_in_use:
        for b, n in enumerate(LENGTHS):
            err = 0.0
            for j in range(n):
                projected = w @ np_(s.hidden[ls][b, j]) + bias
                err += ((projected - np_(t.hidden[lt][b, j])) ** 2).sum()
            expected += err / (n * TEACHER.hidden_size)
    got = total(loss, s, t, LABELS, hp(hidden_weight=0.7)).item()
    assert got == pytest.approx(0.7 * expected, rel=1e-5)
    assert loss.describe(hp())["projection"] == "Linear(8 -> 12)"


def test_hidden_mse_needs_no_projection_at_equal_sizes():
    same = SimpleNamespace(num_hidden_layers=4, hidden_size=8, num_attention_heads=2)
    loss = loss_for(LOSSES["hidden_mse"], STUDENT, same)
    assert loss.projection is None and loss.modules == [] and "projection" not in loss.describe(hp())


def scores_np(q, k, heads, b, h, n):
    d = q.shape[-1] // heads
    qh, kh = q[b, :n, h * d:(h + 1) * d], k[b, :n, h * d:(h + 1) * d]
    return np.array([[qh[i] @ kh[j] / math.sqrt(d) for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_attention_reference(kind):
    cls = LOSSES["attention"]
    loss = cls(cls.Settings(kind=kind))
    loss.setup(STUDENT, TEACHER, loss.pairs(2, 4), "cpu")
    assert loss.pairs_in_use == [(1, 2), (2, 4)]  # attention has no embeddings layer
    s, t = side(STUDENT, 1), side(TEACHER, 2)
    heads = 2
    expected = 0.0
    for ls, lt in loss.pairs_in_use:
        (qs, ks, _), (qt, kt, _) = [tuple(np_(x) for x in o.attention[layer]) for o, layer in ((s, ls), (t, lt))]
        for b, n in enumerate(LENGTHS):
            per = 0.0
            for h in range(heads):
                a_s, a_t = scores_np(qs, ks, heads, b, h, n), scores_np(qt, kt, heads, b, h, n)
                if kind == "mse":
                    per += ((a_s - a_t) ** 2).sum()
                else:
                    for i in range(n):
                        p, q = softmax(a_t[i]), softmax(a_s[i])
                        per += (p * (np.log(p) - np.log(q))).sum()
            expected += per / (heads * (n ** 2 if kind == "mse" else n))
    assert total(loss, s, t, LABELS, hp()).item() == pytest.approx(expected, rel=1e-5)


def test_attention_refuses_different_head_counts():
    with pytest.raises(ConfigError, match="the student has 2 heads, the teacher 12; use the \"minilm\" loss"):
        LOSSES["attention"]().check(STUDENT, SimpleNamespace(num_attention_heads=12, hidden_size=768))


def test_minilm_reference_with_other_sizes_and_heads():
    """Relation heads re-split each model's Q/K/V, so a 12-wide teacher with 2 heads teaches an 8-wide student."""
    cls = LOSSES["minilm"]
    loss = cls(cls.Settings(relation_heads=4))
    loss.check(STUDENT, TEACHER)
    loss.setup(STUDENT, TEACHER, loss.pairs(2, 4), "cpu")
    assert loss.pairs_in_use == [(2, 4)]  # MiniLM: last layer to last layer
    s, t = side(STUDENT, 1), side(TEACHER, 2)
    a = 4
    expected = 0.0
    for which in range(3):  # qq, kk, vv
        xs, xt = np_(s.attention[2][which]), np_(t.attention[4][which])
        for b, n in enumerate(LENGTHS):
            per = 0.0
            for h in range(a):
                r_s, r_t = scores_np(xs, xs, a, b, h, n), scores_np(xt, xt, a, b, h, n)
                for i in range(n):
                    p, q = softmax(r_t[i]), softmax(r_s[i])
                    per += (p * (np.log(p) - np.log(q))).sum()
            expected += per / (a * n)
    assert total(loss, s, t, LABELS, hp()).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="hidden size 8 does not split into relation_heads = 3"):
        cls(cls.Settings(relation_heads=3)).check(STUDENT, TEACHER)


def test_cls_reference():
    loss = loss_for(LOSSES["cls"])
    assert loss.pairs_in_use == [(1, 2), (2, 4)]
    s, t = side(STUDENT, 1), side(TEACHER, 2)
    w, bias = np_(loss.projection.weight), np_(loss.projection.bias)
    expected = 0.0
    for ls, lt in loss.pairs_in_use:
        for b in range(B):
            c_s = w @ np_(s.hidden[ls][b, 0]) + bias
            c_t = np_(t.hidden[lt][b, 0])
            expected += ((c_s / np.linalg.norm(c_s) - c_t / np.linalg.norm(c_t)) ** 2).sum()
    assert total(loss, s, t, LABELS, hp()).item() == pytest.approx(expected, rel=1e-5)


def test_logit_loss_is_the_textbook_recipe_with_identical_numbers():
    from searcher.losses import kd_loss

    loss = loss_for(LOSSES["logits"])
    s, t = side(STUDENT, 1), side(TEACHER, 2)
    h = hp(alpha=0.3, temperature=4.0)
    assert torch.equal(total(loss, s, t, LABELS, h), kd_loss(s.logits, t.logits, LABELS, 0.3, 4.0))
    assert loss.needs([]).logits and loss.needs([]).student.empty and not loss.token_level


# ---------------------------------------------------------------------------------------------------------------
# Layer maps


def test_layer_maps():
    assert layers.pairs("uniform", 3, 12, embeddings=True) == [(0, 0), (1, 4), (2, 8), (3, 12)]
    assert layers.pairs("uniform", 4, 6) == [(1, 2), (2, 3), (3, 4), (4, 6)]  # k = 1.5, rounded half to even
    assert layers.pairs("last", 2, 6) == [(2, 6)]
    assert layers.pairs(((0, 0), (2, 5)), 2, 6) == [(0, 0), (2, 5)]
    with pytest.raises(ConfigError, match=r"pair \[3, 5\] is out of range for a student of 2 and a teacher of 6"):
        layers.pairs(((3, 5),), 2, 6)
    with pytest.raises(ConfigError, match=r"pair \[0, 0\] is out of range"):
        layers.pairs(((0, 0),), 2, 6, lowest=1)  # attention layers start at 1
    for bad in ("first", [[1]], [[1, -1]], [], [[1, True]]):
        with pytest.raises(ConfigError, match="layer_map"):
            layers.parse(bad, "[distill.hidden_mse] layer_map")


# ---------------------------------------------------------------------------------------------------------------
# Studies with layer-wise losses, end to end (the tiny world: a 2-layer, 2-head, 64-wide BERT teacher)


def layerwise_study(world, tmp_path, name="lw", **distill):
    return world.study(tmp_path, name=name, study={"n_trials": 2},
                       student={"layers": [1, 2], "hidden": [64], "init": "teacher"},
                       search={"epochs": 2, "hidden_weight": [0.1, 2.0], "attention_weight": 0.5},
                       distill={"losses": ["logits", "hidden_mse", "attention", "minilm"], **distill})


def test_a_study_distills_hidden_states_and_attention(world, tmp_path, cli):
    from pathlib import Path

    import optuna

    from searcher.config import load_study
    from searcher.records.trial import TERM

    path = layerwise_study(world, tmp_path)
    code, _, err = cli("optimize", path)
    assert code == 0, err
    assert "teacher intermediate outputs: computing hidden states of layers [0, 1, 2]" in err
    config = load_study(path)
    study = optuna.load_study(study_name="lw", storage=config.storage_url())
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 2 and "hidden_weight" in trials[0].params
    for t in trials:
        terms = t.user_attrs["loss_terms"]
        assert [x["loss"] for x in terms] == ["logits", "hidden_mse", "attention", "minilm"]
        layers_ = t.user_attrs["student"]["layers"]
        assert terms[1]["layers"] == [[0, 0]] + [[i, round(i * 2 / layers_)] for i in range(1, layers_ + 1)]
        assert terms[1]["weight"] == t.params["hidden_weight"] and terms[2]["weight"] == 0.5
        assert terms[3]["layers"] == [[layers_, 2]] and terms[3]["settings"]["relation_heads"] == 2
        history = t.user_attrs["history"]
        for name in ("logits", "hidden_mse", "attention", "minilm"):
            assert len(history[TERM + name]) == 2 and all(v > 0 for v in history[TERM + name])
        assert "hidden_weight * " in t.user_attrs["recipe"]["loss"] and "hidden_mse_weight" not in \
            t.user_attrs["recipe"]["loss"]
    # the card names every term with its weight and layer map, and shows each term per epoch
    code, out, err = cli("card", path, "--best", "--out", tmp_path / "cards")
    assert code == 0, err
    text = (Path(out.split()[0]) / "README.md").read_text()
    assert "- `hidden_mse`: hidden-state MSE (TinyBERT), weight" in text
    assert "layers (student <- teacher, 0 = embeddings): 0<-0" in text
    header = next(line for line in text.splitlines() if line.startswith("| Training Loss"))
    assert [c.strip() for c in header.split("|")[1:6]] == ["Training Loss", "Train logits", "Train hidden_mse",
                                                           "Train attention", "Train minilm"]
    # `searcher import` of our own card brings the loss settings back (the front matter), and so does its record
    from searcher import recipes

    best = max(trials, key=lambda t: t.value)
    want = {"losses": ["logits", "hidden_mse", "attention", "minilm"], "hidden_mse": {"layer_map": "uniform"},
            "attention": {"layer_map": "uniform", "kind": "mse"},
            "minilm": {"layer_map": "last", "relation_heads": None, "relations": ["qq", "kk", "vv"]}}
    for source in (Path(out.split()[0]) / "README.md", Path(out.split()[0])):
        (r,) = recipes.read(str(source))
        assert r.distill == want and r.values["hidden_weight"] == best.params["hidden_weight"]
        assert r.values["attention_weight"] == 0.5
        assert recipes.conflicts([r], config) == []
        assert any("the source distilled with [distill] losses = [\"logits\", \"hidden_mse\"" in n for n in r.notes)
    plain = load_study(world.study(tmp_path / "plain", name="plain", search={"hidden_weight": None}))
    assert any("this study with the logits loss alone" in c for c in recipes.conflicts([r], plain))
    # a second study on the same data and teacher reads the cache: the teacher is not run again for its states
    path2 = layerwise_study(world, tmp_path / "again", name="lw2")
    code, _, err = cli("optimize", path2)
    assert code == 0 and "computing hidden states" not in err, err


def test_the_cached_and_the_online_teacher_give_the_same_loss(world, tmp_path):
    """Over the budget, the teacher runs beside the student: the loss is the same to float16 precision."""
    from searcher.train import distill, runtime as rt
    from searcher.search import layerwise
    from searcher.config import load_study
    from searcher.search.prepare import prepare
    from searcher.train.student import StudentSpec, build

    run = rt.resolve("cpu", "off")
    results = {}
    for budget in (8.0, 0.0):
        path = layerwise_study(world, tmp_path / str(budget), name=f"b{int(budget)}", cache_budget_gb=budget)
        p = prepare(load_study(path), run)
        assert p.layerwise.online == (budget == 0.0)
        model, tok = build(StudentSpec("teacher", 2), p.task, *p.teacher_model(), seed=3)
        enc = p.encoded(tok)
        losses = layerwise.build_losses(p.config)
        distill.prepare_losses(losses, model, p.teacher_config, "cpu")
        step = distill._Step(model, hyperparams.from_values(
            {**{h.name: h.default_value for h in hyperparams.REGISTRY}, "learning_rate": 0.0, "batch_size": 16,
             "temperature": 2.0, "alpha": 0.5, "epochs": 1, "hidden_weight": 1.0, "attention_weight": 0.5}, seed=0),
            run, 10, losses, p.teacher_outputs(enc, 0))
        model.eval()  # no dropout: both paths see the same student
        terms: dict = {}
        data = distill.Batches(enc["train"], p.logits.splits["train"], run)
        data.epoch([np.arange(16)], 16)
        step(data, 0, terms)
        results[budget] = {k: float(v) for k, v in terms.items()}
    for name, value in results[8.0].items():
        assert results[0.0][name] == pytest.approx(value, rel=2e-3, abs=1e-4), name


@pytest.mark.parametrize("change, message", [
    ({"distill": {"losses": ["logits", "hidden_mse"], "hidden_mse": {"layer_map": [[0, 0], [3, 2]]}}},
     "[distill.hidden_mse] for the teacher-initialised student of 1 layers: layer map pair [3, 2] is out of range "
     "for a student of 1 and a teacher of 2 layers"),
    ({"distill": {"losses": ["logits", "attention"]}, "student": {"init": "random", "hidden": [64]}},
     "the student has 1 heads, the teacher 2"),
    ({"distill": {"losses": ["hidden_mse"]}}, "losses must include \"logits\""),
    ({"distill": {"losses": ["logits", "hiden_mse"]}}, "unknown loss 'hiden_mse'; did you mean 'hidden_mse'?"),
    ({"distill": {"losses": ["logits"]}, "search": {"hidden_weight": 2.0}},
     "hidden_weight is the weight of the 'hidden_mse' loss, which is not in [distill] losses"),
    ({"distill": {"losses": ["logits", "hidden_mse"]}, "search": {"hidden_weight": -1.0}},
     "hidden_weight must lie in [0, inf)"),
    ({"distill": {"losses": ["logits", "hidden_mse"]}, "search": {"hidden_weight": [0.1, float("nan")]}},
     "hidden_weight must be a finite number"),
    ({"distill": {"losses": ["logits", "hidden_mse"], "intermediate_epochs": 2}},
     "intermediate_epochs = 2 leaves no epoch for the predictions in a trial of 2 epochs"),
    ({"distill": {"losses": ["logits"], "minilm": {"relation_heads": 2}}},
     "[distill.minilm] sets options of the 'minilm' loss, which is not in [distill] losses"),
    # issue 28: 0 silently became the teacher's head count (2), while -2 was refused
    ({"distill": {"losses": ["logits", "minilm"], "minilm": {"relation_heads": 0}}},
     "relation_heads must be positive, got 0"),
    ({"distill": {"losses": ["logits", "minilm"], "minilm": {"relation_heads": -2}}},
     "relation_heads must be positive, got -2"),
])
def test_bad_layerwise_settings_are_one_line_before_training(world, tmp_path, cli, change, message):
    sections = {"student": {"layers": [1], "hidden": [64], "init": "teacher"}, "search": {"epochs": 2}}
    for key, value in change.items():
        sections.setdefault(key, {}).update(value)
    path = world.study(tmp_path, name="bad", **sections)
    code, _, err = cli("optimize", path)
    assert code == 2 and message in err, err
    assert "Traceback" not in err and not (tmp_path / "bad.db").exists()


def test_minilm_relation_heads_default_to_a_count_that_fits_the_teacher_and_every_student(world, tmp_path, cli):
    """Issue 28: a 12-head teacher with students of hidden 64 and 128 was refused ("does not split into
    relation_heads = 12"). The default is the largest count up to the teacher's heads dividing every hidden size
    (96, 64, 128: 8), said in the log; a count the study file sets stays as given."""
    import optuna
    from transformers import BertConfig, BertForSequenceClassification

    from conftest import VOCAB, make_tokenizer
    from searcher.config import load_study

    teacher = tmp_path / "twelve-heads"
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=96, num_hidden_layers=2, num_attention_heads=12,
                     intermediate_size=192, max_position_embeddings=64, num_labels=2,
                     id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(teacher)
    make_tokenizer().save_pretrained(teacher)
    sections = {"teacher": {"model": str(teacher)}, "study": {"n_trials": 2},
                "student": {"layers": [1], "hidden": [64, 128], "init": "random"},
                "search": {"epochs": 1}, "distill": {"losses": ["logits", "minilm"]},
                "enqueue": [{"hidden": 64}, {"hidden": 128}]}
    path = world.study(tmp_path / "default", name="heads", **sections)
    code, _, err = cli("optimize", path)
    assert code == 0, err
    assert ("[distill.minilm] relation_heads = 8, the largest count up to the teacher's 12 heads that divides "
            "every hidden size (128, 96, 64)") in err
    study = optuna.load_study(study_name="heads", storage=load_study(path).storage_url())
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(t.user_attrs["student"]["hidden"] for t in trials) == [64, 128]
    assert all(t.user_attrs["loss_terms"][1]["settings"]["relation_heads"] == 8 for t in trials)
    # one the study file sets is used as given (and checked against every student)
    path = world.study(tmp_path / "set", name="set", **{**sections, "distill": {**sections["distill"],
                                                                               "minilm": {"relation_heads": 12}}})
    code, _, err = cli("optimize", path)
    assert code == 2 and "hidden size 64 does not split into relation_heads = 12" in err, err
    # a teacher whose head count fits every student keeps it
    fits = world.study(tmp_path / "fits", name="fits", **{**sections, "student": {**sections["student"],
                                                                                  "hidden": [192]},
                                                          "enqueue": None, "study": {"n_trials": 1}})
    code, _, err = cli("optimize", fits)
    assert code == 0 and "[distill.minilm] relation_heads = 12, the teacher's head count" in err, err


def test_token_level_losses_need_the_teachers_tokenizer(world, tmp_path, cli):
    """A pretrained student with its own vocabulary: the logits loss works across tokenizers, hidden_mse does not."""
    from transformers import BertTokenizerFast

    from conftest import make_bert

    student = tmp_path / "other-student"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "the", "a"]
    make_bert(layers=1, hidden=64, labels=["neg", "pos"]).save_pretrained(student)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(student)
    sections = {"student": {"checkpoints": [str(student)], "layers": None, "hidden": None, "init": None},
                "search": {"epochs": 1}, "study": {"n_trials": 1}}
    path = world.study(tmp_path, name="tok", distill={"losses": ["logits", "hidden_mse"]}, **sections)
    code, _, err = cli("optimize", path)
    assert code == 2 and "compare the student with the teacher token by token, but student" in err, err
    assert "uses another tokenizer than the teacher" in err
    path = world.study(tmp_path / "logits", name="tok", distill={"losses": ["logits"]}, **sections)
    code, _, err = cli("optimize", path)
    assert code == 0, err


def test_a_loss_that_needs_attention_refuses_a_model_without_reachable_attention(world, tmp_path, monkeypatch):
    from searcher.train import outputs as model_outputs

    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="has no self-attention query/key/value projections that searcher can read"):
        model_outputs.check_attention(model, [1], "the teacher")
