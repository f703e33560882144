"""ONNX export: fp32 parity with PyTorch on every row, dynamic axes, which inputs the graph takes, int8 measured,
atomic writes, and the side-by-side comparison. Tiny models built in tmp dirs; no network."""

import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import VOCAB, make_bert, make_tokenizer, sentence
from searcher import data
from searcher.records import export
from searcher.data import tokens
from searcher.train.batching import collate
from searcher.errors import ExportError

import onnxruntime  # noqa: E402,F401 - the [test] extra installs the export extra: never skipped

ROWS = 120


def _split(n: int, seed: int, pairs: bool = False) -> data.Split:
    rng = random.Random(seed)
    labels = [rng.randint(0, 1) for _ in range(n)]
    first = tuple(sentence(rng, lab) for lab in labels)
    if not pairs:
        return data.Split((first,), np.array(labels, dtype=np.int64))
    second = tuple(sentence(rng, rng.randint(0, 1)) for _ in labels)
    return data.Split((first, second), np.array(labels, dtype=np.int64))


def _train(model, enc: tokens.Encoded, steps: int = 30) -> None:
    """A few steps of plain cross-entropy, so predictions vary and accuracy has something to measure."""
    rng = np.random.default_rng(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        idx = rng.choice(len(enc), 16, replace=False)
        batch = collate(enc, idx)
        out = model(**batch, labels=torch.from_numpy(enc.labels[idx]))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def enc(tok):
    return tokens.encode(_split(ROWS, seed=1), tok, 32, None, "")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tok, enc):
    """A tiny BERT trained on the good/bad task, saved with its tokenizer, then exported into the same folder."""
    model = make_bert(seed=3)
    _train(model, tokens.encode(_split(400, seed=2), tok, 32, None, ""))
    folder = tmp_path_factory.mktemp("student")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    paths = export.export(model, folder)
    return model, folder, paths


def _dropout_model():
    """make_bert with heavy dropout, so a forward in train mode can never pass for one in eval mode."""
    model = make_bert(seed=5)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.5
    return model


# --- fp32 export and parity ---


def test_export_writes_the_hub_layout_and_matches_pytorch_on_every_row(trained, enc):
    model, folder, paths = trained
    assert paths == {"onnx": folder / "onnx" / "model.onnx", "onnx-int8": folder / "onnx" / "model_quantized.onnx"}
    assert sorted(p.name for p in (folder / "onnx").iterdir()) == ["model.onnx", "model_quantized.onnx"]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp folder left
    sess = export.session(paths["onnx"], threads=1)
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    result = export.parity(model, sess, enc)
    assert result["rows"] == ROWS
    assert result["predictions_equal"] and result["ok"]
    assert result["max_abs_logit_diff"] <= 1e-4
    assert len(set(export.torch_logits(model, enc).argmax(-1))) == 2  # both classes predicted: equality means something


@pytest.mark.parametrize("batch_size", [1, 3, 17])
def test_dynamic_batch_and_sequence_axes(trained, enc, batch_size):
    model, _, paths = trained
    sess = export.session(paths["onnx"], threads=1)
    widths = {int(enc.lengths[idx].max()) for idx in export._chunks(len(enc), batch_size)}
    assert len(widths) >= 3 and max(widths) > 8  # several padded lengths, longer than the export's dummy input
    got = export.predict_logits(sess, enc, batch_size)
    expected = export.torch_logits(model, enc, batch_size=64)  # other batches, other padding: same logits
    assert got.shape == (ROWS, 2) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-4
    assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_padding_is_masked_not_frozen_into_the_graph(trained, enc):
    """One row alone vs the same row padded inside a batch with a much longer one: same logits."""
    _, _, paths = trained
    sess = export.session(paths["onnx"], threads=1)
    short, long = int(np.argmin(enc.lengths)), int(np.argmax(enc.lengths))
    assert enc.lengths[long] > enc.lengths[short] + 4
    alone = sess.run(["logits"], export._feed(sess, collate(enc, np.array([short]))))[0]
    padded = sess.run(["logits"], export._feed(sess, collate(enc, np.array([long, short]))))[0]
    assert np.abs(alone[0] - padded[1]).max() <= 1e-4


def test_sentence_pairs_token_type_ids_matter_and_onnx_agrees(tmp_path, tok):
    enc = tokens.encode(_split(40, seed=4, pairs=True), tok, 48, None, "")
    assert enc.token_type_ids.max() == 1
    model = make_bert(seed=6)
    with torch.no_grad():  # at BERT's init scale (std 0.02) the logits hardly move; make both ends count
        model.bert.embeddings.token_type_embeddings.weight.normal_(0.0, 1.0)
        model.classifier.weight.normal_(0.0, 1.0)
    paths = export.export(model, tmp_path, formats=("onnx",))
    sess = export.session(paths["onnx"], threads=1)
    zeroed = tokens.Encoded(enc.input_ids, np.zeros_like(enc.token_type_ids), enc.offsets, enc.labels, enc.pad_token_id)
    with_types, without = export.torch_logits(model, enc), export.torch_logits(model, zeroed)
    assert np.abs(with_types - without).max() > 1e-2  # 100x the tolerance: a graph ignoring them fails below
    assert np.abs(export.predict_logits(sess, enc, 8) - with_types).max() <= 1e-4
    assert np.abs(export.predict_logits(sess, zeroed, 8) - without).max() <= 1e-4


def test_session_uses_the_given_threads_on_cpu(trained):
    sess = export.session(trained[2]["onnx"], threads=3)
    options = sess.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert sess.get_providers() == ["CPUExecutionProvider"]


def test_model_without_token_type_ids_exports_two_inputs(tmp_path, tok, enc):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=len(VOCAB), dim=64, n_layers=2, n_heads=2, hidden_dim=128, max_position_embeddings=64))
    assert export.input_names(model) == ("input_ids", "attention_mask")
    paths = export.export(model, tmp_path, formats=("onnx",))
    assert list(paths) == ["onnx"] and sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["model.onnx"]
    sess = export.session(paths["onnx"], threads=1)
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]
    result = export.parity(model, sess, enc)  # enc has token_type_ids (BERT tokenizer): they are not fed
    assert result["ok"], result


def test_bert_graph_gets_zero_token_types_when_the_data_has_none(trained, enc):
    model, _, paths = trained
    sess = export.session(paths["onnx"], threads=1)
    untyped = tokens.Encoded(enc.input_ids, None, enc.offsets, enc.labels, enc.pad_token_id)
    assert export.parity(model, sess, untyped)["ok"]


def test_model_is_in_eval_mode_after_export(tmp_path, enc):
    model = _dropout_model()
    batch = collate(enc, np.arange(8))
    model.train()  # as a caller fresh from training would hand it over
    export.export(model, tmp_path, formats=("onnx",))
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        first, second = model(**batch).logits, model(**batch).logits
    assert torch.equal(first, second)


# --- int8 ---


def test_int8_is_smaller_runs_and_its_accuracy_is_measured(trained, enc):
    model, folder, paths = trained
    assert paths["onnx-int8"].stat().st_size < 0.75 * paths["onnx"].stat().st_size
    fp32 = export.predict_logits(export.session(paths["onnx"], 1), enc)
    int8 = export.predict_logits(export.session(paths["onnx-int8"], 1), enc)
    assert np.abs(int8 - fp32).max() > 1e-5  # really quantized, not a copy of the fp32 graph
    calls = []

    def metrics(logits, references, threshold=None):  # a MetricSet's call: outputs in, the task kind predicts
        predictions = np.asarray(logits).argmax(-1)
        calls.append((predictions, np.asarray(references).copy()))
        return {"accuracy": np.float64((predictions == np.asarray(references)).mean())}

    result = export.measure(model, folder, enc, metrics_fn=metrics, repeats=3, batch_repeats=3)
    assert len(calls) == 3 and all((refs == enc.labels).all() for _, refs in calls)
    assert result["onnx-int8"]["accuracy"] == pytest.approx(float((int8.argmax(-1) == enc.labels).mean()))
    assert result["onnx"]["accuracy"] == pytest.approx(float((fp32.argmax(-1) == enc.labels).mean()))
    assert result["onnx"]["accuracy"] > 0.7  # the tiny model learned the task, so accuracy can tell formats apart
    assert type(result["onnx-int8"]["accuracy"]) is float


# --- the folder, failures, missing packages ---


def test_folder_stays_loadable_by_transformers(trained, enc):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, folder, _ = trained
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    loaded = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert len(AutoTokenizer.from_pretrained(folder)) == len(VOCAB)
    assert np.abs(export.torch_logits(loaded, enc) - export.torch_logits(model, enc)).max() == 0.0


def test_failed_export_raises_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("Unsupported: aten::frobnicate\nlong traceback text")

    monkeypatch.setattr(torch.onnx, "export", boom)
    model = make_bert()
    model.train()
    with pytest.raises(ExportError) as e:
        export.export(model, tmp_path / "student")
    message = str(e.value)
    assert "\n" not in message and "aten::frobnicate" in message and "BertForSequenceClassification" in message
    assert isinstance(e.value.__cause__, RuntimeError)
    assert list((tmp_path / "student").iterdir()) == []  # no onnx/, no temp folder
    assert not model.training


def test_failed_quantization_keeps_the_previous_onnx_folder(trained, tmp_path, monkeypatch):
    import onnxruntime.quantization

    model, _, _ = trained
    first = export.export(model, tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "onnx").iterdir()}

    def broken(src, dst, **kwargs):
        open(dst, "wb").write(b"half a file")
        raise ValueError("quantizer exploded")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", broken)
    with pytest.raises(ExportError, match=r"^int8 quantization of model\.onnx failed \(quantizer exploded\); "):
        export.export(model, tmp_path)
    assert {p.name: p.read_bytes() for p in (tmp_path / "onnx").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]
    assert first["onnx"].is_file()


def test_missing_onnxruntime_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    assert not export.available()
    with pytest.raises(ExportError, match=r"pip install 'searcher\[export\]'$") as e:
        export.require()
    assert "\n" not in str(e.value)
    with pytest.raises(ExportError, match=r"searcher\[export\]"):
        export.export(make_bert(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_available_when_installed():
    assert export.available()
    export.require()


def test_unknown_format_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="onnx-fp16"):
        export.export(make_bert(), tmp_path, formats=("onnx-fp16",))


# --- the side-by-side comparison ---


def test_measure_reports_three_formats_as_plain_json(trained, enc):
    model, folder, _ = trained
    result = export.measure(model, folder, enc, repeats=4, batch_repeats=3)
    assert list(result) == ["pytorch", "onnx", "onnx-int8"]
    keys = {"accuracy", "f1", "size_mb", "single_median", "single_p90", "batched_median", "batched_p90", "batch",
            "throughput_per_s", "threads"}
    for name, row in result.items():
        assert keys <= set(row), name
        assert all(type(row[k]) in (float, int) for k in keys), name
        assert row["batch"] == 32 and row["threads"] == torch.get_num_threads()
        assert 0 < row["single_median"] <= row["single_p90"] and row["throughput_per_s"] > 0
    assert result["onnx"]["parity"]["ok"] and result["onnx"]["parity"]["rows"] == ROWS
    assert result["onnx-int8"]["size_mb"] < result["onnx"]["size_mb"]
    assert result["pytorch"]["size_mb"] == pytest.approx((folder / "model.safetensors").stat().st_size / 1e6, abs=1e-3)
    assert result["pytorch"]["accuracy"] == result["onnx"]["accuracy"]
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_measure_runs_each_form_once_over_the_split(trained, enc, monkeypatch):
    """Scores and parity share one pass per form: the parity check costs no inference of its own."""
    model, folder, _ = trained
    passes = []
    torch_logits, predict_logits = export.torch_logits, export.predict_logits
    monkeypatch.setattr(export, "torch_logits", lambda *a, **k: passes.append("pytorch") or torch_logits(*a, **k))
    monkeypatch.setattr(export, "predict_logits", lambda *a, **k: passes.append("onnx") or predict_logits(*a, **k))
    result = export.measure(model, folder, enc, repeats=2, batch_repeats=2)
    assert sorted(passes) == ["onnx", "onnx", "pytorch"]  # fp32 and int8 sessions, and PyTorch
    assert result["onnx"]["parity"]["ok"] and result["onnx"]["parity"]["rows"] == ROWS


def test_measure_before_export_says_what_to_run(tmp_path, enc):
    with pytest.raises(ExportError, match="run searcher.records.export.export"):
        export.measure(make_bert(), tmp_path, enc)


def test_export_is_quiet(tmp_path, capfd, caplog):
    """No tracer warnings, no quantizer hint, nothing on stdout/stderr: a study log should show only what matters."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export.export(make_bert(), tmp_path)
    assert [str(w.message)[:80] for w in caught] == []
    assert [r.getMessage()[:80] for r in caplog.records] == []
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


# ---------------------------------------------------------------------------------------------------------------
# In a study: every kept student is exported, measured, carded and published with its ONNX files


def _study_of(path):
    import optuna

    from searcher.config import load_study

    return optuna.load_study(study_name="tiny", storage=load_study(path).storage_url())


@pytest.fixture(scope="module")
def exported_study(world, tmp_path_factory):
    from searcher.cli import main

    directory = tmp_path_factory.mktemp("exported")
    path = world.study(directory, study={"n_trials": 2, "keep_best": 2, "directions": ["maximize", "minimize"],
                                         "objectives": ["accuracy@onnx-int8", "latency_ms@onnx-int8"],
                                         "pruner": None},
                       export={"formats": ["onnx", "onnx-int8"]}, hub={"repo_id": "acme/{study}-{trial}"})
    assert main(["-q", "optimize", str(path)]) == 0
    return path


def test_each_trial_records_every_form_measured_side_by_side(exported_study):
    study = _study_of(exported_study)
    for t in study.trials:
        forms = t.user_attrs["formats"]
        assert set(forms) >= {"pytorch", "onnx", "onnx-int8"}
        assert forms["onnx"]["parity"]["ok"] and forms["onnx"]["parity"]["rows"] == 64
        for name in ("pytorch", "onnx", "onnx-int8"):
            assert {"accuracy", "f1", "size_mb", "single_median", "single_p90", "throughput_per_s"} <= set(forms[name])
        assert forms["onnx-int8"]["size_mb"] < forms["onnx"]["size_mb"]
        # the Pareto front is over what will be deployed: the int8 model's accuracy and latency
        assert t.values == [forms["onnx-int8"]["accuracy"], forms["onnx-int8"]["single_median"]]
        assert (Path(t.user_attrs["model_dir"]) / "onnx" / "model_quantized.onnx").is_file()


def test_the_card_folder_loads_in_onnxruntime_and_agrees_with_pytorch(exported_study, cli, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    study = _study_of(exported_study)
    number = study.best_trials[0].number
    code, out, err = cli("card", exported_study, "--trial", number, "--out", tmp_path)
    assert code == 0, err
    folder = Path(out.split()[0])
    assert {"config.json", "tokenizer.json", "onnx/model.onnx", "onnx/model_quantized.onnx"} <= \
        {str(p.relative_to(folder)) for p in folder.rglob("*")}
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    texts = ["good film very lovely", "dull and boring plot", "the cast was awful but the story superb"]
    enc = tok(texts, return_tensors="np", padding=True)
    sess = export.session(folder / "onnx" / "model.onnx", threads=1)
    got = sess.run(["logits"], {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs()})[0]
    with torch.no_grad():
        expected = model(**tok(texts, return_tensors="pt", padding=True)).logits.numpy()
    assert np.abs(got - expected).max() < 1e-4
    text = (folder / "README.md").read_text()
    assert "| ONNX int8 (dynamic) | `onnx/model_quantized.onnx` |" in text and "| ONNX fp32 | `onnx/model.onnx` |" in text
    assert "predicts like PyTorch on all 64 evaluation rows" in text
    assert 'file_name="model_quantized.onnx"' in text and '{ dtype: "q8" }' in text
    from huggingface_hub import ModelCard

    assert {"onnx", "transformers.js"} <= set(ModelCard.load(folder / "README.md").data.tags)


def test_push_uploads_the_onnx_folder_in_the_same_commit(exported_study, cli, hub):
    code, out, err = cli("push", exported_study, "--pareto", "--dry-run")
    assert code == 0 and "onnx/model_quantized.onnx" in out
    code, out, err = cli("push", exported_study, "--pareto")
    assert code == 0, err
    for repo in hub.repos.values():
        commits = [c for c in repo.commits if c.title != "initial commit"]
        assert len(commits) == 1 and {"onnx/model.onnx", "onnx/model_quantized.onnx", "README.md"} <= set(
            commits[0].files)


def test_a_failed_export_keeps_the_pytorch_student_and_says_why(world, tmp_path, cli, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("Exporting the operator 'aten::magic' to ONNX opset version 17 is not supported")

    monkeypatch.setattr(torch.onnx, "export", broken)
    path = world.study(tmp_path, study={"n_trials": 1}, export={"formats": ["onnx", "onnx-int8"]})
    code, _, err = cli("optimize", path)
    assert code == 0, err
    t = _study_of(path).trials[0]
    assert t.state.name == "COMPLETE" and "aten::magic" in t.user_attrs["export_reason"]
    assert "formats" not in t.user_attrs and not (Path(t.user_attrs["model_dir"]) / "onnx").exists()
    code, out, err = cli("card", path, "--trial", 0, "--out", tmp_path / "c")
    text = (Path(out.split()[0]) / "README.md").read_text()
    assert "No ONNX files: the export failed" in text and "aten::magic" in text and "onnxruntime" not in text


def test_a_full_disk_while_exporting_says_so_and_stays_out_of_the_card(world, tmp_path, cli, monkeypatch):
    def full(model, args, f, *a, **k):
        raise OSError(28, "No space left on device", f)

    monkeypatch.setattr(torch.onnx, "export", full)
    path = world.study(tmp_path, study={"n_trials": 1}, export={"formats": ["onnx"]})
    code, _, err = cli("optimize", path)
    assert code == 0, err
    lines = [line for line in err.splitlines() if "no ONNX export" in line]
    assert len(lines) == 1 and "disk full at " in lines[0] and "free space and rerun" in lines[0], err
    assert "report the model class" not in err
    t = _study_of(path).trials[0]
    assert t.state.name == "COMPLETE" and "export_reason" not in t.user_attrs
    code, out, err = cli("card", path, "--trial", 0, "--out", tmp_path / "c")
    text = (Path(out.split()[0]) / "README.md").read_text()
    assert "disk full" not in text and "No space left" not in text and "the export failed" not in text


def test_a_format_objective_without_the_extra_fails_before_training(world, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(export, "available", lambda: False)
    monkeypatch.setattr(export, "require", lambda: (_ for _ in ()).throw(ExportError(
        f"ONNX export needs onnx and onnxruntime (No module named 'onnxruntime'); {export.INSTALL}")))
    path = world.study(tmp_path, study={"objectives": ["accuracy@onnx-int8"]}, export={"formats": ["onnx-int8"]})
    code, _, err = cli("optimize", path)
    assert code == 2 and "pip install 'searcher[export]'" in err and err.count("\n") == 1
    assert not (tmp_path / "tiny.db").exists()


def test_format_objectives_are_checked_with_the_study_file(world, tmp_path):
    from searcher.config import load_study
    from searcher.errors import ConfigError

    path = world.study(tmp_path, study={"objectives": ["accuracy@onnx-int8"]}, export={"formats": ["onnx"]})
    with pytest.raises(ConfigError, match="needs the 'onnx-int8' format: add it to \\[export\\] formats"):
        load_study(path)
    path = world.study(tmp_path, study={"objectives": ["throughput"]})
    with pytest.raises(ConfigError, match="needs a format"):
        load_study(path)


TRANSFORMERS_JS = """
import { pipeline, env } from "@huggingface/transformers";
env.allowRemoteModels = false;
env.localModelPath = process.argv[2];
const out = {};
for (const dtype of ["fp32", "q8"]) {
  const classifier = await pipeline("text-classification", process.argv[3], { dtype });
  out[dtype] = await classifier(JSON.parse(process.argv[4]), { top_k: null });
}
console.log(JSON.stringify(out));
"""


def test_transformers_js_loads_the_card_folder_and_predicts_like_pytorch(exported_study, cli, tmp_path):
    """The layout and files transformers.js reads from a Hub repo, loaded by transformers.js itself (in Node)."""
    import shutil
    import subprocess

    from conftest import requirement

    modules = os.environ.get("SEARCHER_TEST_TRANSFORMERS_JS")
    if not (modules and (Path(modules) / "@huggingface" / "transformers").is_dir() and shutil.which("node")):
        requirement("js", "needs node and @huggingface/transformers: set SEARCHER_TEST_TRANSFORMERS_JS to a "
                          "node_modules holding it (.ci/run installs one)")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    study = _study_of(exported_study)
    number = study.best_trials[0].number
    code, out, _ = cli("card", exported_study, "--trial", number, "--out", tmp_path / "models")
    folder = Path(out.split()[0])
    script = tmp_path / "run.mjs"
    script.write_text(TRANSFORMERS_JS)
    (tmp_path / "node_modules").symlink_to(modules)  # node resolves packages from the script's folder upwards
    texts = ["good film very lovely", "dull and boring plot", "the cast was awful but the story superb"]
    proc = subprocess.run(["node", str(script), str(folder.parent) + "/", folder.name, json.dumps(texts)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        probs = torch.softmax(model(**tok(texts, return_tensors="pt", padding=True)).logits, -1).numpy()
    for dtype, tolerance in (("fp32", 1e-5), ("q8", 0.05)):
        for row, expected in zip(got[dtype], probs):
            scores = {d["label"]: d["score"] for d in row}
            assert [scores["neg"], scores["pos"]] == pytest.approx(expected.tolist(), abs=tolerance), dtype
