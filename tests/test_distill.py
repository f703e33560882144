"""The distillation loop: the KD loss, micro-batching, AMP paths and non-finite losses."""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_bert, make_tokenizer, sentence
from searcher import data
from searcher.train import distill, inference, runtime
from searcher.data import tokens
from searcher.train.batching import collate
from searcher.hyperparams import Hyperparams
from searcher.errors import NonFiniteLossError


def textbook_loss(student_logits, teacher_logits, labels, alpha, temperature):
    """The public DistillationTrainer's compute_loss, verbatim in spirit (batchmean KL)."""
    ce = F.cross_entropy(student_logits, labels)
    kd = torch.nn.KLDivLoss(reduction="batchmean")(F.log_softmax(student_logits / temperature, dim=-1),
                                                    F.softmax(teacher_logits / temperature, dim=-1))
    return alpha * ce + (1 - alpha) * temperature ** 2 * kd


@pytest.mark.parametrize("alpha, temperature", [(0.0, 1.0), (0.5, 4.0), (0.9, 20.0), (1.0, 2.0)])
def test_kd_loss_matches_the_textbook_recipe(alpha, temperature):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    y = torch.randint(0, 3, (8,), generator=g)
    ours = distill.kd_loss(s, t, y, alpha, temperature) / 8
    assert torch.allclose(ours, textbook_loss(s, t, y, alpha, temperature), atol=1e-6)


def encoded(n=48, seed=0, labels=2):
    rng = np.random.default_rng(seed)
    tok = make_tokenizer()
    words = list(tok.get_vocab())[5:]
    texts = [" ".join(rng.choice(words, size=rng.integers(2, 12))) for _ in range(n)]
    split = data.Split((tuple(texts),), rng.integers(0, labels, size=n))
    return tokens.encode(split, tok, 32, None, "")


def no_dropout_bert(seed=0):
    model = make_bert(seed=seed)
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def test_cached_logits_loss_equals_live_teacher_loss():
    """Training against cached logits is the same loss as calling the teacher in the loop."""
    enc = encoded()
    teacher = make_bert(seed=5).eval()
    run = runtime.resolve("cpu", "off")
    cached = inference.logits_of(teacher, enc, run, batch_size=7)  # odd batch: sorted, padded, un-permuted
    student = make_bert(seed=6).eval()
    idx = np.arange(16)
    batch = collate(enc, idx)
    with torch.no_grad():
        live = teacher(**batch).logits
        s = student(**batch).logits
    y = torch.from_numpy(enc.labels[idx])
    assert torch.allclose(torch.from_numpy(cached[idx]), live, atol=1e-5)
    assert torch.allclose(distill.kd_loss(s, torch.from_numpy(cached[idx]), y, 0.3, 4.0),
                          distill.kd_loss(s, live, y, 0.3, 4.0), atol=1e-4)


def test_gradient_accumulation_equals_one_big_batch():
    enc = encoded(n=40)
    teacher_logits = np.random.default_rng(1).normal(size=(40, 2)).astype(np.float32)
    hp = Hyperparams(learning_rate=1e-3, batch_size=20, temperature=2.0, alpha=0.5, epochs=2, seed=3)
    weights = []
    for micro in (20, 7, 1):
        model = no_dropout_bert(seed=2)
        run = runtime.resolve("cpu", "off", micro_batch_size=micro)
        history = distill.train(model, enc, teacher_logits, enc, teacher_logits, hp, run)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert [r.step for r in history] == [2, 4]
    assert torch.allclose(weights[0], weights[1], atol=2e-5)
    assert torch.allclose(weights[0], weights[2], atol=2e-5)
    assert not torch.allclose(weights[0], torch.cat([p.flatten() for p in no_dropout_bert(seed=2).parameters()]))


def good_bad(n: int, seed: int) -> tokens.Encoded:
    """The learnable tiny task of conftest (good words vs bad words, some noise), encoded."""
    rng = random.Random(seed)
    labels = [rng.randint(0, 1) for _ in range(n)]
    texts = tuple(sentence(rng, y) for y in labels)
    return tokens.encode(data.Split((texts,), np.array(labels, dtype=np.int64)), make_tokenizer(), 32, None, "")


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_amp_paths_learn_on_cpu(amp, dtype, monkeypatch):
    """The CUDA AMP code paths (autocast, fp16 grad scaler with unscale/clip/step/update) run on a CPU too, and the
    model they train learns: the loss falls and validation accuracy ends far above the majority class."""
    train, validation = good_bad(160, seed=0), good_bad(128, seed=1)
    run = runtime.resolve("cpu", amp)
    assert run.amp == amp
    scalers = []
    make_scaler = runtime.Runtime.grad_scaler
    monkeypatch.setattr(runtime.Runtime, "grad_scaler", lambda self: scalers.append(make_scaler(self)) or scalers[-1])
    model = make_bert(seed=1)
    with torch.no_grad(), run.autocast():  # the forward really runs in the reduced precision
        assert model(**collate(validation, np.arange(4))).logits.dtype == dtype
    hp = Hyperparams(learning_rate=3e-3, batch_size=16, temperature=1.0, alpha=1.0, epochs=5, seed=0)
    history = distill.train(model, train, None, validation, None, hp, run)

    (scaler,) = scalers  # one GradScaler(enabled=...) path: it scales only for fp16
    assert scaler.is_enabled() == (amp == "fp16")
    if amp == "fp16":  # the scaler scaled every loss and its scale is still finite (no overflow spiral)
        assert np.isfinite(scaler.get_scale())
    losses = [r.train_loss for r in history]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses  # about 0.70 -> 0.24 in every mode when this was written
    majority = max(validation.labels.mean(), 1 - validation.labels.mean())  # 0.52
    assert history[-1].metrics["accuracy"] >= majority + 0.25, (history[-1].metrics, majority)  # about 0.89


def test_auto_amp_is_fp32_on_cpu():
    run = runtime.resolve("cpu", "auto")
    assert run.amp == "off" and not run.grad_scaler().is_enabled()
    assert run.micro_for(1024) == runtime.CPU_MICRO_BATCH and run.micro_for(16) == 16


def test_non_finite_loss_raises_with_a_reason():
    enc = encoded()
    logits = np.full((len(enc), 2), np.nan, dtype=np.float32)
    hp = Hyperparams(learning_rate=1e-3, batch_size=16, temperature=2.0, alpha=0.5, epochs=1, seed=0)
    with pytest.raises(NonFiniteLossError, match="training loss became nan at epoch 1"):
        distill.train(make_bert(), enc, logits, enc, logits, hp, runtime.resolve("cpu", "off"))


def test_epoch_results_carry_metrics_and_steps():
    enc = encoded(n=50)
    hp = Hyperparams(learning_rate=1e-3, batch_size=16, temperature=2.0, alpha=1.0, epochs=2, seed=0)
    seen = []
    history = distill.train(make_bert(), enc, None, enc, None, hp, runtime.resolve("cpu", "off"),
                            on_epoch=seen.append)
    assert seen == history
    assert [r.step for r in history] == [4, 8]  # ceil(50 / 16) optimizer steps per epoch
    assert list(history[0].metrics) == ["accuracy", "f1", "precision", "recall"]
    assert history[0].cross_entropy > 0 and history[0].eval_loss == pytest.approx(history[0].cross_entropy)  # alpha 1
    assert all(isinstance(v, float) for v in history[0].metrics.values())


@pytest.mark.parametrize("poison", [None, 2])
def test_a_step_the_fp16_scaler_skips_does_not_advance_the_schedule(poison, monkeypatch):
    """An inf gradient at the `poison`-th step: the scaler skips that optimizer step and lowers its scale, and the
    learning-rate schedule stays where it was (as the Trainer does), so warmup and decay keep their length."""
    enc = good_bad(64, seed=0)
    hp = Hyperparams(learning_rate=1e-3, batch_size=16, temperature=1.0, alpha=1.0, epochs=2, warmup_ratio=0.3,
                     seed=0)
    scalers, schedules = [], []
    make_scaler, make_schedule = runtime.Runtime.grad_scaler, distill.get_linear_schedule_with_warmup
    monkeypatch.setattr(runtime.Runtime, "grad_scaler", lambda self: scalers.append(make_scaler(self)) or scalers[-1])
    monkeypatch.setattr(distill, "get_linear_schedule_with_warmup",
                        lambda *a: schedules.append(make_schedule(*a)) or schedules[-1])
    model = make_bert(seed=1)
    backward = []

    def inject(grad):
        backward.append(1)
        return torch.full_like(grad, float("inf")) if len(backward) == poison else grad

    model.classifier.weight.register_hook(inject)
    distill.train(model, enc, None, enc, None, hp, runtime.resolve("cpu", "fp16"))

    (scaler,), (schedule,) = scalers, schedules
    steps = len(backward)
    assert steps == 8  # 64 rows / 16 per step x 2 epochs, one micro-batch each
    skipped = 1 if poison else 0
    assert schedule.last_epoch == steps - skipped
    adam_steps = {int(s["step"]) for s in schedule.optimizer.state.values()}
    assert adam_steps == {steps - skipped}  # the optimizer really skipped it
    assert scaler.get_scale() == 65536.0 / (2 if poison else 1)
    assert distill.warmup_steps(0.3, 8) == 3  # rounded up, as the Trainer does


def test_a_compiled_step_trains_as_the_eager_one():
    """[train] compile runs each step's forward and loss through torch.compile (here the aot_eager backend, which
    traces and runs the graph without generating code: fast enough for a test, and the same tracing path)."""
    enc = encoded(n=40)
    teacher_logits = np.random.default_rng(1).normal(size=(40, 2)).astype(np.float32)
    hp = Hyperparams(learning_rate=1e-3, batch_size=16, temperature=2.0, alpha=0.5, epochs=2, seed=3)
    runs = [distill.train(no_dropout_bert(seed=2), enc, teacher_logits, enc, teacher_logits, hp,
                          runtime.resolve("cpu", "off", compile=how)) for how in (False, "aot_eager")]
    assert [r.train_loss for r in runs[1]] == pytest.approx([r.train_loss for r in runs[0]], abs=1e-5)
    assert [r.eval_loss for r in runs[1]] == pytest.approx([r.eval_loss for r in runs[0]], abs=1e-5)


def test_a_compiled_step_of_a_layer_wise_loss_has_no_graph_break():
    """transformers installs its output-capturing hooks at the first forward asking for hidden states, under a lock
    torch.compile cannot trace: the step installs them first, so a layer-wise loss compiles whole."""
    from torch._dynamo.utils import counters

    from searcher.losses import HiddenMSE, LogitKD, Side
    from searcher.teachers.hidden import OnlineTeacherStates

    enc = encoded(n=40)
    teacher_logits = np.random.default_rng(1).normal(size=(40, 2)).astype(np.float32)
    teacher = no_dropout_bert(seed=5)
    hp = Hyperparams(learning_rate=1e-3, batch_size=16, temperature=2.0, alpha=0.5, epochs=1, seed=3)
    torch._dynamo.reset()
    counters.clear()
    run = runtime.resolve("cpu", "off", compile="aot_eager")
    distill.train(no_dropout_bert(seed=2), enc, teacher_logits, enc, teacher_logits, hp, run,
                  losses=[LogitKD(), HiddenMSE()], teacher_config=teacher.config,
                  teacher=OnlineTeacherStates(teacher, Side(hidden=frozenset({0, 1, 2})), run))
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"], dict(counters["graph_break"])


def test_an_unknown_compile_backend_is_refused_in_one_line():
    from searcher.errors import ConfigError

    with pytest.raises(ConfigError, match="not a torch.compile backend here"):
        runtime.resolve("cpu", "off", compile="no-such-backend")


def test_device_batches_are_the_host_batches_padded_to_a_bucket():
    """TokenRows gathers on the device what collate pads on the host, to a bucketed width (a multiple of 8)."""
    from searcher.train.batching import TokenRows, width_for

    enc = encoded(n=30)
    rows = TokenRows(enc, "cpu")
    idx = np.array([3, 7, 1, 20])
    host = collate(enc, idx)
    width = rows.width(idx)
    assert width == width_for(host["input_ids"].shape[1]) and width % 8 == 0
    device = rows.batch(torch.from_numpy(idx), width)
    n = host["input_ids"].shape[1]
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(device[key][:, :n], host[key])
    assert not device["attention_mask"][:, n:].any()
    assert [width_for(k) for k in (1, 8, 9, 64, 65, 250, 257)] == [8, 8, 16, 64, 96, 256, 320]


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert", "electra"])
def test_a_prepared_attention_mask_gives_the_same_logits_and_gradients_without_the_host_check(family, monkeypatch):
    """The training step hands these encoders the 4D mask transformers would build, so transformers skips its
    `padding_mask.all()` (a device-to-host sync per forward on a GPU); logits and gradients are unchanged."""
    import transformers
    from transformers import masking_utils

    from searcher.train.models import forward_inputs

    names = {"bert": "BertConfig", "roberta": "RobertaConfig", "distilbert": "DistilBertConfig",
             "electra": "ElectraConfig"}
    sizes = (dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64) if family == "distilbert" else
             dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    config = getattr(transformers, names[family])(vocab_size=100, max_position_embeddings=64, num_labels=3,
                                                  attn_implementation="sdpa", **sizes)
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
    ids = torch.randint(5, 100, (4, 9))
    mask = torch.ones(4, 9, dtype=torch.long)
    mask[1, 6:] = mask[3, 2:] = 0
    checks = []
    monkeypatch.setattr(masking_utils, "_ignore_bidirectional_mask_sdpa",
                        lambda *a, _real=masking_utils._ignore_bidirectional_mask_sdpa, **k: checks.append(1) or
                        _real(*a, **k))

    def run(inputs):
        model.zero_grad()
        logits = model(**inputs).logits
        logits.square().sum().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = {"input_ids": ids, "attention_mask": mask}
    logits, grads = run(plain)
    assert checks  # transformers looks at the 2D mask's contents
    checks.clear()
    prepared = forward_inputs(model, plain)
    assert prepared["attention_mask"].shape == (4, 1, 9, 9) and plain["attention_mask"] is mask
    logits4, grads4 = run(prepared)
    assert not checks  # ... and not at the prepared one
    assert torch.allclose(logits, logits4, atol=1e-6, rtol=0)
    assert len(grads) == len(grads4) and all(torch.allclose(a, b, atol=1e-6, rtol=0) for a, b in zip(grads, grads4))


def test_other_models_and_attention_get_their_inputs_unchanged():
    import transformers

    from searcher.train.models import forward_inputs

    inputs = {"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    eager = transformers.AutoModelForSequenceClassification.from_config(transformers.BertConfig(
        vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
        attn_implementation="eager"))
    assert forward_inputs(eager, inputs) is inputs  # eager attention adds a float mask: left to transformers
    modern = transformers.AutoModelForSequenceClassification.from_config(transformers.ModernBertConfig(
        vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2))
    assert forward_inputs(modern, inputs) is inputs  # its sliding-window mask is built from the 2D one


@pytest.mark.parametrize("cohort_size", [1, 2])
def test_no_training_step_reads_a_device_tensor_back(world, tmp_path, cli, host_reads, cohort_size):
    """A step (forward with transformers' mask handling, the logit and layer-wise losses on cached teacher states,
    backward, clipping, AdamW, schedule) runs no op that reads values back to the host, alone and in a cohort: on a
    GPU nothing in it waits for the device. The loss is read every distill.SYNC_EVERY steps, outside the step."""
    from searcher.train import cohort

    host_reads(distill._Step, "__call__")
    host_reads(cohort.Cohort, "_step")
    # its own cache: the teacher states it computes are not the session's (test_losses checks they are computed there)
    path = world.study(tmp_path, name="reads", study={"n_trials": 2, "cache_dir": str(tmp_path / "cache")},
                       student={"layers": [1], "hidden": [64], "init": "teacher"},
                       search={"epochs": 1, "hidden_weight": 0.5, "attention_weight": 0.5, "hidden_dropout": 0.0,
                               "batch_size": 8, "max_grad_norm": 1.0},
                       distill={"losses": ["logits", "hidden_mse", "attention"]},
                       train={"cohort": cohort_size, "latency": False})
    code, _, err = cli("optimize", path)
    assert code == 0, err
    step = "Cohort._step" if cohort_size > 1 else "_Step.__call__"
    calls, reads = host_reads.seen[step]
    assert calls >= 4 and not reads, reads
