"""Teachers as objects (searcher.teachers): the promises every kind of teacher keeps, the ensemble's and the causal
LM's arithmetic against independent references, and studies taught by a seed ensemble, by a causal LM and across
tokenizers, with their cards and records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import VOCAB, make_tokenizer
from searcher import teachers as _teachers
from searcher.testing.teachers import TeacherPromises

PROMPT = "the review: {text} . it was"
VERBALIZERS = {"neg": "bad", "pos": "good great"}  # "good great" is two tokens: their log-probabilities add up


def make_causal_lm(folder: Path, seed: int = 0) -> Path:
    """A tiny random GPT-2 that reads the world's vocabulary (its tokenizer is the world's)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(VOCAB), n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=2,
                     eos_token_id=3, pad_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


def make_other_student(folder: Path) -> Path:
    """A DistilBERT checkpoint with its own vocabulary (another order and more words): another family and tokenizer
    than the BERT teacher's."""
    import torch
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertForSequenceClassification

    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(5)
    words = VOCAB[:5] + list(reversed(VOCAB[5:])) + [f"extra{i}" for i in range(40)]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    cfg = DistilBertConfig(vocab_size=len(words), dim=48, n_layers=1, n_heads=2, hidden_dim=96,
                           max_position_embeddings=64, num_labels=2)
    DistilBertForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


# The independent references


def reference_verbalizer_logprob(model, tokenizer, text: str, word: str) -> float:
    """log P(word | prompt) by one unbatched forward pass of the whole sequence, summed over the word's tokens."""
    import torch

    head, tail = PROMPT.split("{text}")
    prompt = (tokenizer(head, add_special_tokens=False)["input_ids"] + tokenizer(text, add_special_tokens=False)[
        "input_ids"] + tokenizer(tail, add_special_tokens=False)["input_ids"])
    target = tokenizer(word, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + target])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
    return float(sum(logp[len(prompt) - 1 + j, t] for j, t in enumerate(target)))


def test_combining_matches_the_definitions():
    from searcher.teachers import combine

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    w = np.array([0.25, 0.75])
    assert np.allclose(combine([a, b], w, "logits", "single_label"), 0.25 * a + 0.75 * b, atol=1e-6)

    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    mixed = combine([a, b], w, "probabilities", "single_label")
    assert np.allclose(softmax(mixed), 0.25 * softmax(a) + 0.75 * softmax(b), atol=1e-6)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert np.allclose(sig(combine([a, b], w, "probabilities", "multi_label")), 0.25 * sig(a) + 0.75 * sig(b),
                       atol=1e-5)
    s1, s2 = rng.normal(size=(5, 1)), rng.normal(size=(5, 1))
    assert np.allclose(combine([s1, s2], w, "logits", "regression"), 0.25 * s1 + 0.75 * s2, atol=1e-6)


# The promises every teacher keeps (searcher.testing.teachers), for every registered kind and the ensemble


def study_of(kind: str, world, directory):
    """A tiny study taught by a teacher of this kind (every kind in searcher.teachers.TYPES needs one here)."""
    from searcher.config import load_study

    if kind == "classifier":
        sections = {}
    elif kind == "causal_lm":
        sections = {"teacher": {"model": str(make_causal_lm(world.root / "causal-lm")), "prompt": PROMPT,
                                "verbalizers": VERBALIZERS},
                    "student": {"init": "pretrained", "checkpoints": [str(world.teacher)], "layers": None,
                                "hidden": None}}
    elif kind == "ensemble":  # the fine-tuned classifier and a seed fine-tune of the base
        sections = {"teacher": {"model": None}, "teachers": None}
    else:
        raise AssertionError(f"no example study for teacher kind {kind!r}: add one to tests/test_teachers.py")
    path = world.study(directory, name=kind.replace("_", "-"), **sections)
    if kind == "ensemble":
        import tomllib

        import tomli_w

        doc = tomllib.loads(path.read_text())
        doc["teacher"] = {"combine": "probabilities"}
        doc["teachers"] = [{"name": "tuned", "model": str(world.teacher), "weight": 2.0},
                           {"name": "seeded", "base": str(world.base), "seed": 3,
                            "fine_tune": {"epochs": 2, "learning_rate": 3e-3, "batch_size": 16}}]
        path.write_text(tomli_w.dumps(doc))
    return load_study(path)


def teacher_of(kind: str, world, tmp_path):
    from searcher.testing.teachers import build

    config = study_of(kind, world, tmp_path)
    return config, build(config)


class TestEveryTeacher(TeacherPromises):
    @pytest.fixture(params=[*_teachers.TYPES, "ensemble"])
    def teacher_config(self, request, world):
        return lambda directory: study_of(request.param, world, directory)


def test_an_ensemble_describes_its_members_and_their_weights(world, tmp_path):
    from searcher.testing.teachers import readied

    t, task = readied(study_of("ensemble", world, tmp_path))
    assert t.type == "ensemble"
    t.logits(task)
    info = t.describe()
    assert [m["name"] for m in info["members"]] == ["tuned", "seeded"]
    assert [m["weight"] for m in info["members"]] == pytest.approx([2 / 3, 1 / 3])
    assert info["members"][1]["seed"] == 3 and info["members"][1]["fine_tuned_by_searcher"]


def test_the_causal_lm_scores_each_label_by_its_verbalizer_after_the_prompt(world, tmp_path):
    from searcher import data

    config, t = teacher_of("causal_lm", world, tmp_path)
    t.model_config()
    task = data.load_task(config, label_order=t.label_order())
    t.check(task)
    t.ready(task)
    got = t.logits(task).splits["validation"][:6]
    model, tokenizer = t.model()
    for i in range(6):
        text = task.validation.texts[0][i]
        want = [reference_verbalizer_logprob(model, tokenizer, text, VERBALIZERS[name]) for name in task.label_names]
        assert got[i] == pytest.approx(want, abs=1e-4)


def test_a_seed_ensemble_fine_tunes_once_per_seed_and_its_card_names_every_teacher(world, tmp_path, cli):
    import optuna

    from searcher import recipes
    from searcher.config import load_study

    path = world.study(tmp_path, name="seeds", teacher={
        "model": None, "base": str(world.base), "seeds": [11, 12, 13],
        "fine_tune": {"epochs": 4, "learning_rate": 3e-3, "batch_size": 16}},  # 2: seed 12 learns nothing
        study={"n_trials": 1}, search={"epochs": 1})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    for seed in (11, 12, 13):
        assert f"seed {seed}" in err  # fine-tuned once per seed
    assert "teacher: the mean of logits of base-seed11 accuracy" in err
    config = load_study(path)
    study = optuna.load_study(study_name="seeds", storage=config.storage_url())
    info = study.user_attrs["teacher"]
    assert info["type"] == "ensemble" and [m["seed"] for m in info["members"]] == [11, 12, 13]
    assert len({m["path"] for m in info["members"]}) == 3  # three fine-tunes, three folders
    code, out, err = cli("card", path, "--best", "--out", tmp_path / "cards")
    assert code == 0, err
    card = Path(out.split()[0]) / "README.md"
    text = card.read_text()
    assert "distilled from an ensemble of 3 teachers (the mean of their logits" in text
    for seed in (11, 12, 13):
        assert f"- base-seed{seed}: " in text and f"(seed {seed})" in text
    (r,) = recipes.read(str(card))
    assert any("ensemble of 3 teachers" in n and "[[teachers]]" in n for n in r.notes)
    record = json.loads((card.parent / "searcher_trial.json").read_text())
    assert len(record["teacher"]["members"]) == 3 and not any("path" in m for m in record["teacher"]["members"])
    # the same study runs again without a fine-tune or a teacher pass: every member's folder and logits are cached
    code, _, err = cli("optimize", path, "--n-trials", "1")
    assert code == 0, err
    assert "fine-tuning" not in err and "computing once" not in err


def test_a_causal_lm_teaches_alone_and_its_prompt_is_on_the_card(world, tmp_path, cli):
    lm = make_causal_lm(world.root / "causal-lm")
    path = world.study(tmp_path, name="lm", teacher={"model": str(lm), "prompt": PROMPT, "verbalizers": VERBALIZERS},
                       student={"init": "pretrained", "checkpoints": [str(world.base)], "layers": None,
                                "hidden": None},
                       study={"n_trials": 1}, search={"epochs": 1})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    code, out, err = cli("card", path, "--best", "--out", tmp_path / "cards")
    assert code == 0, err
    text = (Path(out.split()[0]) / "README.md").read_text()
    assert "(a causal LM, 2 layers" in text
    assert f"- Teacher prompt: `{PROMPT}`" in text and 'pos = "good great"' in text


def test_logit_kd_works_across_families_and_tokenizers(world, tmp_path, cli):
    """A BERT teacher, a DistilBERT student of another vocabulary: each reads its own tokenization of each row."""
    import optuna

    from searcher.data import tokens
    from searcher.config import load_study

    other = make_other_student(world.root / "other-student")
    t_tok, s_tok = make_tokenizer(), __import__("transformers").AutoTokenizer.from_pretrained(other)
    assert tokens.tokenizer_fingerprint(t_tok) != tokens.tokenizer_fingerprint(s_tok)
    assert t_tok("good film")["input_ids"] != s_tok("good film")["input_ids"]
    path = world.study(tmp_path, name="cross", student={"init": "pretrained", "checkpoints": [str(other)],
                                                        "layers": None, "hidden": None},
                       study={"n_trials": 1}, search={"learning_rate": 5e-3, "batch_size": 16, "temperature": 2.0,
                                                      "alpha": 0.0, "epochs": 4})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    config = load_study(path)
    (trial,) = optuna.load_study(study_name="cross", storage=config.storage_url()).trials
    history = trial.user_attrs["history"]  # columns
    assert history["train_loss"][-1] < history["train_loss"][0]  # alpha = 0: it learns from the teacher alone
    assert trial.user_attrs["metrics"]["accuracy"] >= 0.7, history


@pytest.mark.parametrize("change, message", [
    ({"teachers": [{"model": "WORLD_TEACHER"}, {"base": "WORLD_BASE"}], "teacher": {"model": "WORLD_TEACHER"}},
     "[teacher] model belongs in each [[teachers]] entry"),
    ({"teachers": [{"model": "WORLD_TEACHER"}, {"model": "WORLD_TEACHER"}]}, "two teachers are named 'teacher'"),
    ({"teachers": [{"name": "a", "model": "WORLD_TEACHER"}, {"name": "b", "base": "WORLD_BASE"}],
      "distill": {"losses": ["logits", "hidden_mse"]}},
     "[distill] hidden_mse matches one teacher's layers, and this study has 2; set [teacher] layer_wise"),
    ({"teacher": {"model": "WORLD_TEACHER", "prompt": "no slot", "verbalizers": {"neg": "bad", "pos": "good"}}},
     "prompt must contain {text}"),
    ({"teacher": {"model": "WORLD_LM", "prompt": PROMPT, "verbalizers": {"neg": "bad", "positive": "good"}},
      "student": {"init": "pretrained", "checkpoints": ["WORLD_BASE"], "layers": None, "hidden": None}},
     "verbalizers name ['neg', 'positive'] but the data's labels are ['neg', 'pos'] (missing: pos)"),
    ({"teacher": {"model": "WORLD_LM", "prompt": PROMPT, "verbalizers": VERBALIZERS}},
     "needs a classifier teacher's layers and tokenizer"),
    # issue 28: verbalizers that cannot tell the labels apart taught a uniform target with exit 0
    ({"teacher": {"model": "WORLD_LM", "prompt": PROMPT, "verbalizers": {"neg": " bad", "pos": "bad"}},
      "student": {"init": "pretrained", "checkpoints": ["WORLD_BASE"], "layers": None, "hidden": None}},
     "teacher 'causal-lm': the verbalizers of 'neg' (\" bad\") and 'pos' (\"bad\") are the same tokens"),
    ({"teacher": {"model": "WORLD_LM", "prompt": PROMPT, "verbalizers": {"neg": "zzyzx", "pos": "qwop"}},
      "student": {"init": "pretrained", "checkpoints": ["WORLD_BASE"], "layers": None, "hidden": None}},
     "teacher 'causal-lm': the verbalizer of 'neg' (\"zzyzx\") holds the tokenizer's unknown token [UNK]"),
    ({"teacher": {"model": "WORLD_LM", "prompt": PROMPT, "verbalizers": {"neg": "bad", "pos": "good qwop"}},
      "student": {"init": "pretrained", "checkpoints": ["WORLD_BASE"], "layers": None, "hidden": None}},
     "the verbalizer of 'pos' (\"good qwop\") holds the tokenizer's unknown token [UNK]"),
    ({"teacher": {"model": None, "base": "WORLD_BASE", "seeds": [1, 2], "seed": 3}},
     "give seed (one fine-tune) or seeds (one per seed), not both"),
    # issue 28: a repeated seed (an ensemble of one teacher twice) and {text_pair} without a second column
    ({"teacher": {"model": None, "base": "WORLD_BASE", "seeds": [1, 1]}},
     "[teacher] seeds names seed 1 twice"),
    ({"teacher": {"model": "WORLD_LM", "prompt": "premise: {text} hypothesis: {text_pair} answer:",
                  "verbalizers": VERBALIZERS},
      "student": {"init": "pretrained", "checkpoints": ["WORLD_BASE"], "layers": None, "hidden": None}},
     "uses {text_pair}, the second text of a pair, and the data has one text column (text_columns = ['text'])"),
    ({"teachers": [{"name": "a", "model": "WORLD_TEACHER", "weight": -1.0}, {"name": "b", "model": "WORLD_TEACHER"}]},
     "weight must be a positive number"),
    ({"teachers": [{"name": "a", "model": "WORLD_TEACHER"}, {"name": "b", "model": "WORLD_TWO_LABEL_OTHER"}]},
     "teacher 'b' predicts 3 labels but the data has 2"),
])
def test_bad_teachers_are_one_line_before_training(world, tmp_path, cli, change, message):
    from conftest import make_bert

    other = world.root / "three-labels"
    if not other.is_dir():
        make_bert(num_labels=3, labels=["x0", "x1", "x2"]).save_pretrained(other)
        make_tokenizer().save_pretrained(other)
    values = {"WORLD_TEACHER": str(world.teacher), "WORLD_BASE": str(world.base), "WORLD_TWO_LABEL_OTHER": str(other),
              "WORLD_LM": str(make_causal_lm(world.root / "causal-lm"))}

    def fill(x):
        if isinstance(x, dict):
            return {k: fill(v) for k, v in x.items()}
        if isinstance(x, list):
            return [fill(v) for v in x]
        return values.get(x, x) if isinstance(x, str) else x

    change = fill(change)
    members = change.pop("teachers", None)
    teacher = change.pop("teacher", {"model": None} if members else {})
    path = world.study(tmp_path, name="bad", teacher=teacher, study={"n_trials": 1}, **change)
    if members:
        import tomllib

        import tomli_w

        doc = tomllib.loads(path.read_text())
        doc["teachers"] = members
        path.write_text(tomli_w.dumps(doc))
    code, _, err = cli("optimize", path)
    assert code == 2 and message in err, err
    assert "Traceback" not in err and not (tmp_path / "bad.db").exists()


def test_searched_ensemble_weights_make_each_trials_target_and_card(world, tmp_path, cli):
    """[teacher] search_weights: each trial draws every teacher's weight, learns from that ensemble (formed from the
    members' cached logits once per trial) and its card says which weights taught it."""
    import re
    import tomllib

    import optuna
    import tomli_w

    from searcher.search import prepare
    from searcher.train import runtime
    from searcher import teachers
    from searcher.config import load_study

    path = world.study(tmp_path, name="searched", teacher={"model": None}, study={"n_trials": 2},
                       search={"epochs": 1})
    doc = tomllib.loads(path.read_text())
    doc["teacher"] = {"combine": "probabilities", "search_weights": [0.1, 1.0]}
    doc["teachers"] = [{"name": "tuned", "model": str(world.teacher)}, {"name": "raw", "model": str(world.base)}]
    path.write_text(tomli_w.dumps(doc))
    code, out, err = cli("optimize", path)
    assert code == 0, err
    config = load_study(path)
    study = optuna.load_study(study_name="searched", storage=config.storage_url())
    assert study.user_attrs["teacher"]["search_weights"] == [0.1, 1.0]
    p = prepare.prepare(config, runtime.resolve("cpu", "off"))
    members = [m.logits(p.task).splits for m in p.teacher.members]
    shares = []
    for trial in study.trials:
        raw = [trial.params["teacher_weight.tuned"], trial.params["teacher_weight.raw"]]
        assert all(0.1 <= w <= 1.0 for w in raw)
        w = [x / sum(raw) for x in raw]
        recorded = trial.user_attrs["teacher_weights"]
        assert list(recorded["weights"].values()) == pytest.approx(w, abs=1e-6)
        want = teachers.combine([m["validation"] for m in members], np.asarray(w), "probabilities", "single_label")
        got = p.target("validation", tuple(w))
        assert np.allclose(got, want, atol=1e-6)
        assert not np.allclose(got, p.logits.splits["validation"], atol=1e-3)  # not the study's equal weights
        _, train_logits, _ = p.training_set(p.encoded(p.teacher.primary.model()[1]), 0, tuple(w))
        assert np.allclose(np.asarray(train_logits), teachers.combine(
            [m["train"] for m in members], np.asarray(w), "probabilities", "single_label"), atol=1e-6)
        shares.append(w[0])
    assert shares[0] != shares[1]
    code, out, err = cli("card", path, "--trial", "1", "--out", tmp_path / "cards")
    assert code == 0, err
    text = (Path(out.split()[0]) / "README.md").read_text()
    assert "the weights searched log-uniformly in [0.1, 1.0] and normalised: this trial's below" in text
    one = study.trials[1].user_attrs["teacher_weights"]
    for name in ("tuned", "raw"):
        assert re.search(rf"- {name}: .*, weight {one['weights'][name]}", text), text
    assert f"the ensemble on the evaluation set: Cross-entropy {one['metrics']['cross_entropy']:.4f}" in text
    # imported into the same study, the trial's draws come back as an [[enqueue]] entry it accepts
    again = tmp_path / "again.toml"
    again.write_text(path.read_text())
    code, out, err = cli("import", Path(out.split()[0]) / "README.md", "--append", again)
    assert code == 0, err
    assert f'"teacher_weight.tuned" = {study.trials[1].params["teacher_weight.tuned"]!r}' in out, out
    from searcher.search import space

    (params, _), = space.enqueued(load_study(again))
    assert {k: v for k, v in params.items() if k.startswith("teacher_weight.")} == {
        k: v for k, v in study.trials[1].params.items() if k.startswith("teacher_weight.")}


@pytest.mark.parametrize("teacher, members, message", [
    ({"model": "WORLD_TEACHER", "search_weights": [0.1, 1.0]}, None, "this study has one teacher"),
    ({"search_weights": [1.0, 0.1]}, [{"name": "a", "model": "WORLD_TEACHER"}, {"name": "b", "model": "WORLD_BASE"}],
     "search_weights must be [low, high] with 0 < low < high"),
    ({"search_weights": [0.1, 1.0]},
     [{"name": "a", "model": "WORLD_TEACHER", "weight": 2.0}, {"name": "b", "model": "WORLD_BASE"}],
     "[[teachers]] 1 fixes its weight and [teacher] search_weights searches every teacher's"),
])
def test_bad_searched_weights_are_one_line(world, tmp_path, cli, teacher, members, message):
    import tomllib

    import tomli_w

    values = {"WORLD_TEACHER": str(world.teacher), "WORLD_BASE": str(world.base)}
    path = world.study(tmp_path, name="bad", study={"n_trials": 1})
    doc = tomllib.loads(path.read_text())
    doc["teacher"] = {k: values.get(v, v) if isinstance(v, str) else v for k, v in teacher.items()}
    if members:
        doc["teachers"] = [{k: values.get(v, v) for k, v in m.items()} for m in members]
    path.write_text(tomli_w.dumps(doc))
    code, _, err = cli("optimize", path)
    assert code == 2 and message in err, err
    assert "Traceback" not in err


def test_a_teacher_whose_numbered_labels_are_in_another_order_is_mapped_by_name(world, tmp_path, caplog):
    """Issue 28: a teacher whose label names are digits in another order than its outputs ("1", "0") was used by
    position, silently. Its outputs are now mapped to the data's labels by name, and one log line says so."""
    import csv
    import logging

    import torch
    from transformers import AutoModelForSequenceClassification

    from searcher.config import load_study
    from searcher.search.prepare import prepare
    from searcher.train import runtime

    for split in ("train", "validation"):  # the tiny world's data with class ids 0 (neg) and 1 (pos)
        rows = list(csv.reader(open(world.data / f"{split}.csv")))[1:]
        with open(tmp_path / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([["text", "label"]] + [[t, int(label == "pos")] for t, label in rows])
    swapped = tmp_path / "swapped-teacher"
    model = AutoModelForSequenceClassification.from_pretrained(world.teacher)
    with torch.no_grad():  # the same teacher with its two outputs swapped, and named so: output 0 is class "1"
        model.classifier.weight.copy_(model.classifier.weight[[1, 0]].clone())
        model.classifier.bias.copy_(model.classifier.bias[[1, 0]].clone())
    model.config.id2label, model.config.label2id = {0: "1", 1: "0"}, {"1": 0, "0": 1}
    model.save_pretrained(swapped)
    make_tokenizer().save_pretrained(swapped)
    data = {"train": str(tmp_path / "train.csv"), "validation": str(tmp_path / "validation.csv")}
    run = runtime.resolve("cpu", "off")
    found, preps = {}, {}
    for name, teacher, names in (("swapped", swapped, None), ("plain", world.teacher, None),
                                 ("named", swapped, ["neg", "pos"])):
        path = world.study(tmp_path / name, name=name, data={**data, "label_names": names},
                           teacher={"model": str(teacher)}, train={"latency": False})
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="searcher"):
            p = prepare(load_study(path), run)
        preps[name] = p
        found[name] = (p.logits.splits["validation"], p.teacher.metrics["validation"]["accuracy"],
                       [r.getMessage() for r in caplog.records if "numbers in another order" in r.getMessage()])
    assert np.allclose(found["swapped"][0], found["plain"][0], atol=1e-5)
    assert found["swapped"][1] == found["plain"][1] > 0.8
    assert found["swapped"][2] == ["teacher 'swapped-teacher': its outputs are named 1, 0 (numbers in another order "
                                   "than its outputs): mapped to the data's labels 0, 1 by name"]
    assert found["plain"][2] == []
    # numbers that are not the data's label names: used by position, as before, and said
    assert found["named"][2] == ["teacher 'swapped-teacher': its outputs are named 1, 0 (numbers in another order "
                                 "than its outputs), which are not the data's labels neg, pos: used by position; set "
                                 "[data] label_names if that is wrong"]
    # a student made of all the teacher's layers starts as the mapped teacher: its copied head in the data's order
    # (it was copied in the teacher's output order, so the swapped teacher's student started with its classes swapped)
    from searcher.train import inference
    from searcher.train.student import StudentSpec, build

    for name in ("swapped", "plain"):
        p = preps[name]
        model, tok = build(StudentSpec("teacher", 2), p.task, *p.teacher_model(), head_order=p.teacher_head_order())
        got = inference.logits_of(model.eval(), p.encoded(tok)["validation"], run, 16)
        assert np.allclose(got, found[name][0], atol=1e-4), name


COLLAPSE = {"epochs": 2, "learning_rate": 0.3, "batch_size": 16}  # a fine-tune this steep ends at one class


def test_a_teacher_no_better_than_the_majority_class_stops_its_fine_tune_or_is_said(world, tmp_path, cli):
    """Issue 28: a teacher that learned nothing (the majority-class rate) was used silently. A fine-tune of
    searcher's own stops the study before the search (exit 2, nothing written) with the advice, unless its
    fine_tune allows it; any other teacher, and an allowed one, is one warning line, a card line and a note line."""
    import re

    import optuna

    from searcher.card import dashboard
    from searcher.config import load_study
    from searcher.records.storage import ATTR_TEACHER

    base = {"model": None, "base": str(world.base), "fine_tune": COLLAPSE}
    path = world.study(tmp_path / "stop", name="stop", teacher=base, study={"n_trials": 1})
    code, out, err = cli("optimize", path)
    assert code == 2, err
    (refusal,) = [line for line in err.splitlines() if line.startswith("searcher: error:")]
    assert "teacher 'base', fine-tuned by searcher from" in refusal and "(learning_rate 0.3, 2 epochs)" in refusal
    assert "no better than always predicting the majority class (0.6094): its fine-tune learned nothing" in refusal
    assert "try a lower learning_rate" in refusal and "[teacher.fine_tune], or set allow_baseline = true" in refusal
    assert not (tmp_path / "stop" / "stop.db").exists() and not (tmp_path / "stop" / "stop").exists()
    collapsed = re.search(r"cached in (\S+)", err).group(1)  # the fine-tuned teacher, kept in the cache

    # a seed ensemble of such fine-tunes that allows it: one warning line naming every member and the ensemble
    path = world.study(tmp_path / "go", name="go", study={"n_trials": 1}, search={"epochs": 1},
                       teacher={**base, "seeds": [1, 2], "fine_tune": {**COLLAPSE, "allow_baseline": True}})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    (warning,) = [line for line in err.splitlines() if "no better than always predicting" in line]
    assert warning.startswith("teacher: no better than always predicting the majority class (accuracy 0.6094 on "
                              "the validation split): base-seed1 (")
    assert "base-seed2 (" in warning and "the ensemble (" in warning

    # a fine-tuned classifier given as `model` (not searcher's fine-tune): said, and the study goes on
    path = world.study(tmp_path / "model", name="model", teacher={"model": collapsed}, study={"n_trials": 1},
                       search={"epochs": 1})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    assert len([line for line in err.splitlines() if "no better than always predicting" in line]) == 1
    config = load_study(path)
    study = optuna.load_study(study_name="model", storage=config.storage_url())
    verdict = study.user_attrs[ATTR_TEACHER]["baseline"]
    assert verdict["metric"] == "accuracy" and verdict["value"] == pytest.approx(39 / 64)
    assert [t["fine_tuned_by_searcher"] for t in verdict["no_better"]] == [False]
    code, out, err = cli("card", path, "--best", "--out", tmp_path / "cards")
    assert code == 0, err
    card = (Path(out.split()[0]) / "README.md").read_text()
    assert re.search(r"\n- Warning: no better than always predicting the majority class \(accuracy 0\.6094 on the "
                     r"validation split\): \S+ \(0\.\d+\)\. A teacher at that baseline learned nothing", card), card
    assert "**Warning**: no better than always predicting the majority class" in \
        dashboard.note_markdown(study, config)


def test_the_constant_baseline_of_each_task_kind():
    """What a model that learned nothing scores: the majority class (its rate), the most frequent label set or none,
    the training mean (correlation 0, the MSE of the mean)."""
    from searcher import tasks

    single = tasks.kind("single_label").baseline(np.array([0, 1, 1, 1]), np.array([2, 0, 2, 1, 2]))
    assert single["accuracy"] == pytest.approx(3 / 5)  # class 2 on every row: the validation's majority
    multi = tasks.kind("multi_label")
    train = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1]], np.float32)
    scores = multi.baseline(train, np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]], np.float32))
    assert scores["micro_f1"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))  # [1, 0, 0] everywhere: tp 1, fp 2, fn 1
    assert scores["subset_accuracy"] == pytest.approx(1 / 3)  # the best of [1, 0, 0] and no label: 1 of 3 rows
    regression = tasks.kind("regression").baseline(np.array([1.0, 2.0, 6.0]), np.array([0.0, 3.0, 4.0]))
    assert regression["pearson"] == regression["spearmanr"] == regression["combined_score"] == 0.0
    assert regression["mse"] == pytest.approx(np.mean((3.0 - np.array([0.0, 3.0, 4.0])) ** 2))


def test_a_new_teacher_kind_is_one_module_and_its_registry_line(world, tmp_path, monkeypatch):
    """Its keys in [teacher] / [[teachers]], its checks and how it is built come from its own declaration (issue 28:
    `build()` branched on whether a prompt was set, and config kept the kinds' keys)."""
    import dataclasses

    from searcher import teachers
    from searcher.config import load_study
    from searcher.errors import ConfigError
    from searcher.train import runtime

    @dataclasses.dataclass(frozen=True)
    class EchoSettings:
        column: str = "label"

    class EchoTeacher(teachers.ClassifierTeacher):  # a kind of its own: its keys, its rule, its constructor
        type, title, selected_by, Settings = "echo", "echo", "column = ...", EchoSettings

        @classmethod
        def selects(cls, table):
            return "column" in table

        @classmethod
        def check_settings(cls, member, where, config):
            if not member.column.isidentifier():
                raise ConfigError(f"{where} column must be a name, got {member.column!r}")

        @classmethod
        def from_member(cls, member, source, where, config, several):
            return cls(member, source, 0, where, several)

    monkeypatch.setitem(teachers.TYPES, "echo", EchoTeacher)  # the registry line
    config = load_study(world.study(tmp_path, teacher={"column": "gold"}))
    assert config.teacher.type == "echo" and config.teacher.column == "gold"
    assert isinstance(teachers.build(config, runtime.resolve("cpu", "off")), EchoTeacher)
    explicit = load_study(world.study(tmp_path / "typed", teacher={"type": "echo"}))
    assert explicit.teacher.type == "echo" and explicit.teacher.column == "label"
    for teacher, message in (({"column": "not a name"}, "[teacher] column must be a name"),
                             ({"type": "echo", "prompt": "{text}"}, "[teacher] prompt is a setting of a causal LM "
                                                                       "teacher, and this one is a echo teacher "
                                                                       "(type = 'echo')"),
                             ({"colum": "x"}, "did you mean 'column'"),
                             ({"type": "nope"}, "[teacher] type must be one of 'classifier', 'causal_lm', 'echo'")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_study(world.study(tmp_path / "bad", teacher=teacher))
    # the kinds searcher ships keep their keys to themselves
    with pytest.raises(ConfigError, match=re.escape("[teacher] seed is a setting of a classifier teacher, and this "
                                                    "one is a causal LM teacher")):
        load_study(world.study(tmp_path / "lm", teacher={"prompt": "{text}", "verbalizers": {"neg": "a"},
                                                         "seed": 1}))


def test_cached_hidden_states_gathered_on_the_device_equal_the_rows_read_on_the_host():
    """Layer-wise targets that fit the device budget are copied there once and each batch is a gather (as tokens
    and logits are); the result equals the host path's row-by-row copy exactly, over two row sets (the train split
    and teacher-labelled text, of which only the rows in use count), at widths longer than every row. Over the
    budget, the host path serves them."""
    import numpy as np
    import torch

    from searcher.teachers.hidden import StackedStates

    rng = np.random.default_rng(0)

    def part(lengths, used):
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        states = {layer: rng.normal(size=(int(offsets[-1]), 6)).astype(np.float16) for layer in (1, 3)}
        return states, offsets, used

    stacked = StackedStates([part([3, 5, 1, 4], 4), part([2, 7, 3], 2), part([4], 0)])
    assert stacked.to_device([1, 3], "cpu")
    rows = np.array([5, 0, 4, 2, 1, 3])
    for width in (7, 8, 16):
        for layer in (1, 3):
            host = torch.from_numpy(stacked.padded(rows, layer, width))
            device = stacked.padded_on_device(torch.from_numpy(rows), layer, width)
            assert device.dtype == torch.float32 and torch.equal(host, device), (width, layer)
    small = StackedStates([part([3, 5], 2)])
    assert not small.to_device([1, 3], "cpu", budget=small.nbytes([1, 3]) - 1)  # over budget: the host path
    assert small.to_device([1, 3], "cpu", budget=small.nbytes([1, 3]))
