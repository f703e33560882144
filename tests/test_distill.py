"""The distillation loop: the KD loss, micro-batching, AMP paths and non-finite losses."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_bert, make_tokenizer
from searcher import data, distill, runtime
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
    return data.encode(split, tok, 32, None, "")


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
    cached = distill.logits_of(teacher, enc, run, batch_size=7)  # odd batch: sorted, padded, un-permuted
    student = make_bert(seed=6).eval()
    idx = np.arange(16)
    batch = data.collate(enc, idx)
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
    hp = distill.Hyperparams(learning_rate=1e-3, batch_size=20, temperature=2.0, alpha=0.5, epochs=2, seed=3)
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


def test_micro_batches_cover_the_batch_exactly():
    lengths = np.array([5, 1, 9, 3, 3, 7, 2])
    batch = np.array([6, 0, 2, 5, 1])
    parts = list(data.micro_batches(batch, lengths, 2))
    assert sorted(np.concatenate(parts).tolist()) == sorted(batch.tolist())
    assert [len(p) for p in parts] == [2, 2, 1]
    assert [lengths[p].tolist() for p in parts] == [[1, 2], [5, 7], [9]]  # similar lengths together


def test_epoch_batches_visit_every_example_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=1000)
    for group in (True, False):
        batches = data.epoch_batches(lengths, 64, np.random.default_rng(1), group)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(1000))
        assert all(len(b) == 64 for b in batches[:-1]) or group
    grouped = data.epoch_batches(lengths, 64, np.random.default_rng(1), True)
    plain = data.epoch_batches(lengths, 64, np.random.default_rng(1), False)
    padding = lambda bs: sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in bs)  # noqa: E731
    assert padding(grouped) < padding(plain) / 3


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_paths_train_on_cpu(amp):
    """The CUDA AMP code paths (autocast, fp16 grad scaler with unscale/clip/step/update) run on a CPU too."""
    enc = encoded()
    run = runtime.resolve("cpu", amp)
    assert run.amp == amp
    scaler = run.grad_scaler()
    assert (scaler is not None) == (amp == "fp16")
    model = make_bert(seed=1)
    hp = distill.Hyperparams(learning_rate=1e-3, batch_size=16, temperature=2.0, alpha=0.5, epochs=2, seed=0)
    logits = np.zeros((len(enc), 2), dtype=np.float32)
    history = distill.train(model, enc, logits, enc, logits, hp, run)
    assert all(np.isfinite(r.train_loss) for r in history)
    assert run.amp_label == "Native AMP"


def test_auto_amp_is_fp32_on_cpu():
    run = runtime.resolve("cpu", "auto")
    assert run.amp == "off" and run.amp_label == "" and run.grad_scaler() is None
    assert run.micro_for(1024) == runtime.CPU_MICRO_BATCH and run.micro_for(16) == 16


def test_non_finite_loss_raises_with_a_reason():
    enc = encoded()
    logits = np.full((len(enc), 2), np.nan, dtype=np.float32)
    hp = distill.Hyperparams(learning_rate=1e-3, batch_size=16, temperature=2.0, alpha=0.5, epochs=1, seed=0)
    with pytest.raises(NonFiniteLossError, match="training loss became nan at epoch 1, step 1"):
        distill.train(make_bert(), enc, logits, enc, logits, hp, runtime.resolve("cpu", "off"))


def test_epoch_results_carry_metrics_and_steps():
    enc = encoded(n=50)
    hp = distill.Hyperparams(learning_rate=1e-3, batch_size=16, temperature=2.0, alpha=1.0, epochs=2, seed=0)
    seen = []
    history = distill.train(make_bert(), enc, None, enc, None, hp, runtime.resolve("cpu", "off"),
                            on_epoch=seen.append)
    assert seen == history
    assert [r.step for r in history] == [4, 8]  # ceil(50 / 16) optimizer steps per epoch
    assert set(history[0].metrics) == {"accuracy", "f1", "precision", "recall"}
    assert all(isinstance(v, float) for v in history[0].metrics.values())
