"""ModernBERT end to end on tiny random configs: as a teacher, as a checkpoint student, teacher-initialised students
made of a ModernBERT teacher's own layers (their global/sliding attention kept), and their ONNX export."""

import json

import optuna
import pytest
import torch

from conftest import VOCAB, make_tokenizer
from searcher import data
from searcher.config import load_study
from searcher.train import student


def modernbert(layers=4, labels=("neg", "pos"), seed=0, every=3):
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    torch.manual_seed(seed)
    tok = make_tokenizer()
    cfg = ModernBertConfig(vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                           num_attention_heads=2, max_position_embeddings=64, global_attn_every_n_layers=every,
                           local_attention=8, pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id,
                           sep_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id,
                           eos_token_id=tok.sep_token_id, num_labels=len(labels),
                           id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    return ModernBertForSequenceClassification(cfg)


def modern_tokenizer():
    """The test vocabulary as ModernBERT's tokenizers are: no token_type_ids."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True,
                             model_input_names=["input_ids", "attention_mask"])


@pytest.fixture(scope="module")
def modern_teacher(world, tmp_path_factory):
    """A tiny ModernBERT fine-tuned on the tiny world's data, saved with a tokenizer that has no token_type_ids."""
    from searcher.hyperparams import Hyperparams
    from searcher.train import distill, runtime

    folder = tmp_path_factory.mktemp("modernbert") / "teacher"
    config = load_study(world.study(folder.parent))
    task = data.load_task(config)
    tok = modern_tokenizer()
    from searcher.data import tokens

    enc = tokens.encode(task.train, tok, 32, None, "modern:train")
    assert enc.token_type_ids is None
    model = modernbert()
    distill.train(model, enc, None, enc, None, Hyperparams(learning_rate=3e-3, batch_size=16, temperature=1.0,
                                                            alpha=1.0, epochs=6, seed=0),
                  runtime.resolve("cpu", "off"))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_teacher_layers_keep_modernberts_own_first_layer():
    names = list(modernbert(layers=6).state_dict())
    assert student.first_layer_differs(names)  # layer 0 has no attention norm
    assert student.teacher_layers(6, 3, keep_first=True) == [0, 2, 5]
    assert student.teacher_layers(6, 1, keep_first=True) == [0]
    assert student.teacher_layers(6, 3) == student.evenly_spread(6, 3)
    from conftest import make_bert

    assert not student.first_layer_differs(list(make_bert(layers=3).state_dict()))


def test_teacher_initialised_modernbert_keeps_each_layers_attention_kind(world, tmp_path):
    teacher = modernbert(layers=6, every=3)  # full, sliding, sliding, full, sliding, sliding
    task = data.load_task(load_study(world.study(tmp_path)))
    model, _ = student.build(student.StudentSpec("teacher", layers=3), task, teacher, modern_tokenizer())
    assert model.config.layer_types == [teacher.config.layer_types[i] for i in (0, 2, 5)]
    t, s = teacher.state_dict(), model.state_dict()
    assert torch.equal(s["model.layers.1.attn.Wqkv.weight"], t["model.layers.2.attn.Wqkv.weight"])
    assert torch.equal(s["model.layers.1.attn_norm.weight"], t["model.layers.2.attn_norm.weight"])
    assert torch.equal(s["model.embeddings.tok_embeddings.weight"], t["model.embeddings.tok_embeddings.weight"])
    # saved and loaded back, it is the same model
    model.save_pretrained(tmp_path / "s")
    from transformers import AutoModelForSequenceClassification

    back = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s").eval()
    model.eval()
    ids = modern_tokenizer()(["a good film indeed", "bad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(back(**ids).logits, model(**ids).logits, atol=1e-5)


def test_a_modernbert_teacher_and_its_own_layers_as_students_with_onnx(world, modern_teacher, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 2}, teacher={"model": str(modern_teacher)},
                       student={"init": "teacher", "layers": [1, 2], "hidden": None},
                       export={"formats": ["onnx"]})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2
    for t in done:
        assert t.user_attrs["student"]["model_type"] == "modernbert"
        parity = t.user_attrs["formats"]["onnx"]["parity"]
        assert parity["ok"], parity
        folder = tmp_path / "tiny" / "models" / f"trial-{t.number:04d}"
        cfg = json.loads((folder / "config.json").read_text())
        assert len(cfg["layer_types"]) == cfg["num_hidden_layers"] == t.params["layers"]
        assert cfg["layer_types"][0] == "full_attention"
        import onnx

        graph = onnx.load(str(folder / "onnx" / "model.onnx")).graph
        assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]  # no token_type_ids


def test_a_modernbert_checkpoint_student_of_a_bert_teacher(world, tmp_path, cli):
    """Another family than the teacher's, and a tokenizer that does give token_type_ids: no crash."""
    folder = tmp_path / "modern-student"
    modernbert(layers=2, labels=("a", "b", "c", "d", "e")).save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)  # emits token_type_ids, which ModernBERT does not take
    path = world.study(tmp_path, study={"n_trials": 1},
                       student={"checkpoints": [str(folder)], "init": "pretrained", "layers": None, "hidden": None})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    (t,) = study.trials
    assert t.state == optuna.trial.TrialState.COMPLETE
    assert t.user_attrs["student"]["model_type"] == "modernbert"
    cfg = json.loads((tmp_path / "tiny" / "models" / "trial-0000" / "config.json").read_text())
    assert cfg["id2label"] == {"0": "neg", "1": "pos"}  # its 5-label head was replaced


def test_static_students_from_a_modernbert_teacher(world, modern_teacher, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 1}, teacher={"model": str(modern_teacher)},
                       student={"family": ["static"], "static_dim": [16], "layers": None, "hidden": None,
                                "init": None})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE


def test_hidden_dropout_of_a_modernbert_student():
    model = modernbert(layers=2)
    student.set_dropout(model, 0.2)
    assert model.config.mlp_dropout == model.config.embedding_dropout == 0.2
    assert model.model.embeddings.drop.p == model.model.layers[1].mlp.drop.p == 0.2
    assert model.drop.p == 0.0  # the classifier's own dropout is left alone
