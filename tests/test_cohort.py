"""Cohorts (searcher.train.cohort): members trained together equal the same trials trained alone, for the logit loss
and a layer-wise loss with a trained projection; with dropout on, members are independent."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from searcher import hyperparams
from searcher.data.tokens import Encoded
from searcher.losses import HiddenMSE, LogitKD
from searcher.train import cohort, distill, runtime as rt


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 20, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return Encoded(rng.integers(5, 100, offsets[-1]).astype(np.int32), np.zeros(offsets[-1], np.int8), offsets,
                   rng.integers(0, 2, n), 0), rng.normal(size=(n, 2)).astype(np.float32)


def bert(seed, hidden=32, dropout=0.0, layers=1):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout))


BASE = hyperparams.from_values({**{h.name: h.default_value for h in hyperparams.REGISTRY}, "learning_rate": 1e-3,
                                "batch_size": 16, "temperature": 2.0, "alpha": 0.5, "epochs": 2,
                                "hidden_dropout": 0.0}, seed=0)
# every per-member setting differs: learning rate, warmup, weight decay, clipping (off for one), T, alpha (1 for one)
VARIANTS = [dict(learning_rate=1e-3, temperature=2.0, alpha=0.5),
            dict(learning_rate=3e-3, temperature=4.0, alpha=0.2, warmup_ratio=0.2, weight_decay=0.01,
                 max_grad_norm=0.5),
            dict(learning_rate=5e-4, temperature=1.0, alpha=1.0, warmup_ratio=0.4, weight_decay=0.1,
                 max_grad_norm=0.0)]


@pytest.mark.parametrize("fused", [True, False])
def test_members_equal_their_trials_alone_for_the_logit_loss(monkeypatch, fused):
    """Both updates: torch's fused AdamW kernel per member (CPU and CUDA without fp16) and the AdamW written over the
    stacked axis (fp16's per-member loss scaling, other devices)."""
    enc, logits = data()
    run = rt.resolve("cpu", "off")
    setup = cohort.Cohort._setup

    def with_update(self):
        setup(self)
        self._fused = fused

    monkeypatch.setattr(cohort.Cohort, "_setup", with_update)
    hps = [dataclasses.replace(BASE, **v) for v in VARIANTS]
    alone = [distill.train(bert(i), enc, logits, enc, logits, hp, run) for i, hp in enumerate(hps)]
    team = cohort.Cohort([cohort.Member(bert(i), hp, [LogitKD()]) for i, hp in enumerate(hps)],
                         enc, logits, enc, logits, run)
    together = list(team.epochs())
    assert len(together) == 2
    for epoch in range(2):
        for k in range(3):
            a, t = alone[k][epoch], together[epoch][k]
            assert t.train_loss == pytest.approx(a.train_loss, abs=1e-5)
            assert t.eval_loss == pytest.approx(a.eval_loss, abs=1e-5)
            assert t.metrics == pytest.approx(a.metrics, abs=1e-5)
            assert t.step == a.step


def test_members_equal_their_trials_alone_for_hidden_mse_with_its_projection():
    """A layer-wise loss whose projection (student 32 -> teacher 48) trains beside each member, weights differing."""
    from searcher.teachers.hidden import OnlineTeacherStates
    from searcher.losses import Side

    enc, logits = data()
    run = rt.resolve("cpu", "off")
    teacher = bert(9, hidden=48, layers=2).eval()
    hps = [dataclasses.replace(BASE, **v, hidden_weight=w) for v, w in zip(VARIANTS[:2], (1.0, 0.3))]

    def losses():
        return [LogitKD(), HiddenMSE()]

    def online():
        return OnlineTeacherStates(teacher, Side(hidden=frozenset({0, 2})), run)

    alone = [distill.train(bert(i), enc, logits, enc, logits, hp, run, losses=losses(), teacher=online(),
                           teacher_config=teacher.config) for i, hp in enumerate(hps)]
    team = cohort.Cohort([cohort.Member(bert(i), hp, losses()) for i, hp in enumerate(hps)], enc, logits, enc,
                         logits, run, teacher=online(), teacher_config=teacher.config)
    together = list(team.epochs())
    for epoch in range(2):
        for k in range(2):
            a, t = alone[k][epoch], together[epoch][k]
            assert t.terms == pytest.approx(a.terms, abs=1e-5)
            assert t.eval_loss == pytest.approx(a.eval_loss, abs=1e-5)


def family(kind, seed):
    import transformers as T

    torch.manual_seed(seed)
    small = dict(vocab_size=100, num_hidden_layers=2, num_attention_heads=2, pad_token_id=0)
    if kind == "roberta":
        return T.RobertaForSequenceClassification(T.RobertaConfig(
            **small, hidden_size=32, intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            max_position_embeddings=40))
    if kind == "distilbert":
        return T.DistilBertForSequenceClassification(T.DistilBertConfig(
            vocab_size=100, n_layers=2, n_heads=2, pad_token_id=0, dim=32, hidden_dim=64, dropout=0.0,
            attention_dropout=0.0, seq_classif_dropout=0.0))
    if kind == "electra":  # an embedding narrower than the hidden size, projected up
        return T.ElectraForSequenceClassification(T.ElectraConfig(
            **small, embedding_size=16, hidden_size=32, intermediate_size=64, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0))
    return T.ModernBertForSequenceClassification(T.ModernBertConfig(  # a local and a global attention layer
        **small, hidden_size=32, intermediate_size=64, max_position_embeddings=64, global_attn_every_n_layers=2,
        local_attention=8, cls_token_id=1, sep_token_id=2, bos_token_id=1, eos_token_id=2))


@pytest.mark.parametrize("kind", ["roberta", "distilbert", "electra", "modernbert"])
def test_members_of_every_encoder_family_equal_their_trials_alone(kind):
    enc, logits = data()
    run = rt.resolve("cpu", "off")
    hps = [dataclasses.replace(BASE, **v) for v in VARIANTS]
    alone = [distill.train(family(kind, i), enc, logits, enc, logits, hp, run) for i, hp in enumerate(hps)]
    team = cohort.Cohort([cohort.Member(family(kind, i), hp, [LogitKD()]) for i, hp in enumerate(hps)],
                         enc, logits, enc, logits, run)
    together = list(team.epochs())
    assert team.embedding is not None  # the word embedding looked up outside vmap
    for epoch in range(2):
        for k in range(3):
            a, t = alone[k][epoch], together[epoch][k]
            assert t.train_loss == pytest.approx(a.train_loss, abs=1e-5)
            assert t.eval_loss == pytest.approx(a.eval_loss, abs=1e-5)


@pytest.mark.parametrize("micro", [None, 5])
def test_the_word_embedding_gradient_is_summed_into_one_buffer_kept_across_steps(monkeypatch, micro):
    """The students' word embedding is looked up outside vmap and its gradient added into one buffer that every step
    reuses (under vmap its backward made a new [K, vocabulary, hidden] tensor per step, with a fill and two copies):
    the gradients equal the vmap path's, micro-batches (5 rows of 16) and padded rows included."""
    enc, logits = data()
    run = rt.resolve("cpu", "off", micro_batch_size=micro)
    hps = [dataclasses.replace(BASE, **v, epochs=1) for v in VARIANTS]

    def grads_of_each_step(team):
        seen, update = [], cohort.Cohort._update

        def recording(self):
            seen.append({k: (p.grad.clone(), p.grad.data_ptr()) for k, p in self.params.items()})
            update(self)

        monkeypatch.setattr(cohort.Cohort, "_update", recording)
        list(team.epochs())
        monkeypatch.setattr(cohort.Cohort, "_update", update)
        return team, seen

    def team():
        return cohort.Cohort([cohort.Member(bert(i), hp, [LogitKD()]) for i, hp in enumerate(hps)],
                             enc, logits, enc, logits, run)

    looked_up, fast = grads_of_each_step(team())
    name = "model.bert.embeddings.word_embeddings.weight"
    assert looked_up.embedding is not None and looked_up.embedding.name == name
    monkeypatch.setattr(cohort._Embedding, "of", classmethod(lambda cls, learner, params: None))
    under_vmap, slow = grads_of_each_step(team())
    assert under_vmap.embedding is None
    assert len(fast) == len(slow) == 3
    for a, b in zip(fast, slow):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k][0], b[k][0], atol=1e-6, rtol=1e-5)
        assert a[name][0][:, 0].abs().max() == 0  # the padding row gets no gradient
    assert len({step[name][1] for step in fast}) == 1  # one buffer, every step


def test_with_compile_the_cohort_step_is_one_graph_and_trains_as_eager():
    """[train] compile compiles the cohort's vmapped forward and losses (aot_eager here: the same tracing path,
    without generating code), a layer-wise loss and its projections included: the same results as eager, and no
    graph break (transformers' output-capturing hooks are installed before the first compiled forward)."""
    from torch._dynamo.utils import counters

    from searcher.losses import Side
    from searcher.teachers.hidden import OnlineTeacherStates

    enc, logits = data()
    teacher = bert(9, hidden=48, layers=2).eval()
    hps = [dataclasses.replace(BASE, **v, hidden_weight=w, epochs=1) for v, w in zip(VARIANTS[:2], (1.0, 0.3))]

    def run(how):
        r = rt.resolve("cpu", "off", compile=how)
        team = cohort.Cohort([cohort.Member(bert(i), hp, [LogitKD(), HiddenMSE()]) for i, hp in enumerate(hps)],
                             enc, logits, enc, logits, r, teacher_config=teacher.config,
                             teacher=OnlineTeacherStates(teacher, Side(hidden=frozenset({0, 2})), r))
        return list(team.epochs())

    eager = run(False)
    torch._dynamo.reset()
    counters.clear()
    compiled = run("aot_eager")
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"], dict(counters["graph_break"])
    for epoch in range(1):
        for k in range(2):
            assert compiled[epoch][k].terms == pytest.approx(eager[epoch][k].terms, abs=1e-5)
            assert compiled[epoch][k].eval_loss == pytest.approx(eager[epoch][k].eval_loss, abs=1e-5)


def test_a_stopped_member_leaves_and_the_others_are_unchanged():
    enc, logits = data()
    run = rt.resolve("cpu", "off")
    hps = [dataclasses.replace(BASE, **v, epochs=3) for v in VARIANTS]
    alone = distill.train(bert(2), enc, logits, enc, logits, hps[2], run)
    team = cohort.Cohort([cohort.Member(bert(i), hp, [LogitKD()]) for i, hp in enumerate(hps)],
                         enc, logits, enc, logits, run)
    seen = []
    for results in team.epochs():
        seen.append(sorted(results))
        if len(seen) == 1:
            team.stop(0)
            team.stop(1)
    assert seen == [[0, 1, 2], [2], [2]]
    assert results[2].eval_loss == pytest.approx(alone[-1].eval_loss, abs=1e-5)


def test_with_dropout_members_of_one_seed_draw_their_own_masks():
    """vmap's "different" randomness: two members with the same seed and settings diverge under dropout (they are
    independent runs), and without dropout they stay identical."""
    enc, logits = data()
    run = rt.resolve("cpu", "off")
    for dropout, same in ((0.3, False), (0.0, True)):
        team = cohort.Cohort([cohort.Member(bert(0, dropout=dropout), BASE, [LogitKD()]) for _ in range(2)],
                             enc, logits, enc, logits, run)
        first = next(team.epochs())
        assert (first[0].train_loss == first[1].train_loss) is same, dropout


def test_which_students_can_share_a_cohort():
    a, b = bert(0), bert(1)
    assert cohort.capable(a)
    assert cohort.key(a, BASE) == cohort.key(b, BASE)  # one shape: the seed of the weights does not matter
    assert cohort.key(a, BASE) != cohort.key(bert(0, hidden=64), BASE)
    assert cohort.key(a, BASE) != cohort.key(a, dataclasses.replace(BASE, batch_size=32))
    with pytest.raises(ValueError, match="cohort member 1 does not share member 0's architecture and batches"):
        cohort.Cohort([cohort.Member(a, BASE, []), cohort.Member(bert(0, hidden=64), BASE, [])], None, None, None,
                      None, None)
    a.supports_cohorts = False  # a student family that cannot be stacked says so
    assert not cohort.capable(a)


def test_auto_trains_cohorts_on_a_gpu_and_one_trial_at_a_time_on_a_cpu(tmp_path):
    from searcher.config import parse_study

    assert rt.cohort_size("auto", "cuda:1") == 64 and rt.cohort_size("auto", "cpu") == 1
    assert rt.cohort_size(5, "cpu") == 5
    c = parse_study({"study": {"name": "a"}, "data": {"train": "t.csv", "holdout": 0.1}, "teacher": {"model": "m"},
                     "student": {"layers": [2], "hidden": [128], "init": "random"},
                     "train": {"cohort": "auto", "compile": "aot_eager"}}, tmp_path / "a.toml")
    assert c.train.cohort == "auto" and c.train.compile == "aot_eager"
