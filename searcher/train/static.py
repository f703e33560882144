"""Static-embedding students (Model2Vec-style): a token-embedding table, mean-pooled, and a small head.

The table is distilled from an encoder (the teacher by default) as Model2Vec distils one: every vocabulary token
is passed alone through the encoder ([CLS] token [SEP] for a BERT tokenizer), its output mean-pooled, the rows
reduced by PCA to the student's dimension and scaled by Zipf/SIF weights (rank = token id). It is computed once
per (base, dimension) and cached under the study's cache_dir (`cached_table`); each trial then trains the head
(and, if asked, the table) from the teacher's cached logits through the same distill loop as any student: the
student takes the teacher's token ids and returns `SequenceClassifierOutput(logits=...)`.

A student is saved in Model2Vec's own classifier layout (model.safetensors with the table, head.safetensors,
config.json with head_config, tokenizer.json), so `model2vec.inference.StaticModelPipeline.from_pretrained(folder)`
loads it and predicts what this module's model predicts: special tokens and [UNK] are left out of the mean, as
Model2Vec tokenizes without special tokens and drops unknown ones.

This module does the distillation itself (model2vec's `distill` extra pins an older transformers); model2vec's
base package is only needed to load a saved student back (`check_loads`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np

from searcher import files, timing
from searcher.errors import SearcherError

log = logging.getLogger(__name__)

FAMILY = "static"
HEADS = ("linear", "mlp")
SIF_COEFFICIENT = 1e-4  # Model2Vec's default
TOKEN_BATCH = 512  # tokens per encoder pass while distilling the table
RECIPE = "m2v-mean-pca-sif/1"  # part of the cache key: a changed recipe builds new tables
HEAD_FILE = "head.safetensors"
INSTALL = "pip install 'searcher[static]' (model2vec)"


class StaticError(SearcherError, ValueError):
    """A static student cannot be built, saved or loaded as asked."""


def available() -> bool:
    try:
        import model2vec.inference  # noqa: F401
    except ImportError:
        return False
    return True


def require() -> None:
    if not available():
        raise StaticError(f"[student] family \"static\" saves students that model2vec loads, and model2vec is not "
                          f"installed; {INSTALL}, or remove \"static\" from family")


# ---- distilling the table ------------------------------------------------------------------------------------

def token_outputs(encoder, tokenizer, device: str = "cpu", batch_size: int = TOKEN_BATCH) -> np.ndarray:
    """(vocab, hidden) float32: each token id alone through `encoder` with its tokenizer's special tokens around it,
    the last hidden states mean-pooled. `encoder` is any transformers model that returns hidden states (a base
    model or a sequence classifier)."""
    import torch

    vocab = len(tokenizer)
    prefix, suffix = special_frame(tokenizer)
    ids = torch.tensor([prefix + [i] + suffix for i in range(vocab)], dtype=torch.long)  # one length: no padding
    encoder = encoder.to(device).eval()
    accepted = _accepts(encoder)
    parts = []
    with torch.inference_mode():
        for start in range(0, vocab, batch_size):
            batch = ids[start:start + batch_size].to(device)
            inputs = {"input_ids": batch, "attention_mask": torch.ones_like(batch)}
            if "token_type_ids" in accepted:
                inputs["token_type_ids"] = torch.zeros_like(batch)
            result = encoder(**inputs, output_hidden_states=True)
            hidden = result.hidden_states[-1] if getattr(result, "hidden_states", None) else result.last_hidden_state
            parts.append(hidden.float().mean(dim=1).cpu().numpy())  # Model2Vec's mean over the framed token
    out = np.concatenate(parts)
    return np.nan_to_num(out)


def special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids a tokenizer puts before and after one text ([CLS] / [SEP] for BERT)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for k in range(len(full) - len(plain) + 1):
        if full[k:k + len(plain)] == plain:
            return list(full[:k]), list(full[k + len(plain):])
    return [], []


def _accepts(model) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def sif_weights(n: int, coefficient: float = SIF_COEFFICIENT) -> np.ndarray:
    """Model2Vec's Zipf estimate of token frequency (rank = position in the vocabulary) turned into SIF weights."""
    inv_rank = 1.0 / np.arange(2, n + 2)
    proba = inv_rank / inv_rank.sum()
    return coefficient / (coefficient + proba)


def pca(x: np.ndarray, dim: int) -> np.ndarray:
    """Model2Vec's PCA (eigendecomposition of the covariance; each component's sign fixed by its largest score)."""
    if dim > x.shape[1]:
        raise StaticError(f"static_dim {dim} is larger than the base's hidden size {x.shape[1]}; use static_dim <= "
                          f"{x.shape[1]}")
    x = x.astype(np.float64)
    centered = x - x.mean(axis=0)
    cov = centered.T @ centered / max(1, len(x) - 1)
    values, vectors = np.linalg.eigh(cov)
    components = vectors[:, ::-1][:, :dim].T
    scores = centered @ components.T
    signs = np.sign(scores[np.argmax(np.abs(scores), axis=0), np.arange(dim)])
    signs[signs == 0] = 1
    return (scores * signs).astype(np.float32)


def table_from_outputs(outputs: np.ndarray, dim: int) -> np.ndarray:
    """(vocab, dim) float32: PCA to `dim`, then each row scaled by its SIF weight, as Model2Vec's distill does."""
    return (pca(outputs, dim) * sif_weights(len(outputs))[:, None]).astype(np.float32)


def table_path(cache_dir: Path, base_identity: str, tokenizer_key: str, dim: int) -> Path:
    key = json.dumps([RECIPE, base_identity, tokenizer_key, int(dim)])
    return Path(cache_dir) / "static" / f"table-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"


def cached_table(path: Path, vocab: int, dim: int, outputs: Callable[[], np.ndarray], what: str) -> np.ndarray:
    """The distilled table at `path`, or built once under a lock from `outputs()` (the base's token outputs, which
    the caller may share between dimensions) and sealed; a damaged file is said once in the log and rebuilt."""
    found = _read_table(path, vocab, dim)
    if found is not None:
        return found
    with files.lock(path):
        found = _read_table(path, vocab, dim)
        if found is not None:
            return found
        log.info("static student: distilling a %d x %d embedding table once from %s; cached in %s", vocab, dim,
                 what, path)
        with timing.phase("static table"):
            table = table_from_outputs(outputs(), dim)
        with files.atomic_file(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, table)
            files.seal(tmp, path)
    return _read_table(path, vocab, dim, strict=True)


def _read_table(path: Path, vocab: int, dim: int, strict: bool = False) -> Optional[np.ndarray]:
    if not path.is_file():
        return None
    try:
        with files.reading_cache("static embedding table", path):
            files.check_seal(path)
            table = np.load(path)
            if table.shape != (vocab, dim) or table.dtype != np.float32 or not np.isfinite(table).all():
                raise ValueError(f"shape {table.shape} {table.dtype}, expected ({vocab}, {dim}) float32")
        return table
    except files.DamagedCache as e:
        if strict:
            raise
        files.note_damaged(log, e)
        return None


# ---- the student -----------------------------------------------------------------------------------------------

def _module():
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    class StaticStudent(torch.nn.Module):
        """Embedding table + mean over the real (non-special, known) tokens + a linear or one-hidden-layer head."""

        supports_cohorts = False  # the cohort engine trains it alone for now
        family = FAMILY

        def __init__(self, table, ignored_ids, head: str, num_labels: int, train_embeddings: bool = True,
                     labels: Optional[dict] = None, max_length: Optional[int] = None, base: str = ""):
            super().__init__()
            if head not in HEADS:
                raise StaticError(f"static_head must be one of {', '.join(HEADS)}, got {head!r}")
            table = torch.as_tensor(np.asarray(table, dtype=np.float32))
            vocab, dim = table.shape
            self.embed = torch.nn.Embedding(vocab, dim)
            with torch.no_grad():
                self.embed.weight.copy_(table)
            self.embed.weight.requires_grad_(bool(train_embeddings))
            ignored = torch.zeros(vocab, dtype=torch.bool)
            ignored[[i for i in ignored_ids if 0 <= i < vocab]] = True
            self.register_buffer("ignored", ignored, persistent=False)
            layers = [torch.nn.Linear(dim, num_labels)] if head == "linear" else \
                [torch.nn.Linear(dim, dim), torch.nn.ReLU(), torch.nn.Linear(dim, num_labels)]
            self.head = torch.nn.Sequential(*layers)
            labels = labels or {}
            # what the rest of searcher reads from a model's config (shape, labels), in transformers' names
            self.config = SimpleNamespace(
                model_type="model2vec", hidden_size=int(dim), num_hidden_layers=0, num_attention_heads=0,
                vocab_size=int(vocab), num_labels=int(num_labels), id2label=labels.get("id2label"),
                label2id=labels.get("label2id"), problem_type=labels.get("problem_type"), static_head=head,
                static_train_embeddings=bool(train_embeddings), max_length=max_length, base=base)

        def num_parameters(self) -> int:
            return sum(p.numel() for p in self.parameters())

        def pooled(self, input_ids, attention_mask=None):
            keep = ~self.ignored[input_ids]
            if attention_mask is not None:
                keep = keep & attention_mask.bool()
            weights = keep.unsqueeze(-1).to(self.embed.weight.dtype)
            return (self.embed(input_ids) * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)

        def forward(self, input_ids, attention_mask=None, token_type_ids=None, **ignored):
            # token_type_ids (and output_hidden_states etc.): a bag of tokens has no segments or layers
            return SequenceClassifierOutput(logits=self.head(self.pooled(input_ids, attention_mask)))

        def save_pretrained(self, folder) -> None:
            save(self, folder)

    return StaticStudent


def student_class():
    """The StaticStudent class (built on first use, so importing this module needs no torch)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _module()
    return _CLASS


_CLASS = None


def is_static(model) -> bool:
    return getattr(model, "family", None) == FAMILY


def ignored_ids(tokenizer) -> list[int]:
    """Token ids left out of the mean: the special tokens (Model2Vec encodes without them) and [UNK] (it drops it)."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    if getattr(tokenizer, "unk_token_id", None) is not None:
        ids.add(int(tokenizer.unk_token_id))
    return sorted(int(i) for i in ids)


def build(table: np.ndarray, tokenizer, task, head: str, train_embeddings: bool, max_length: int, base: str,
          seed: int = 0):
    """A fresh static student for `task` on a distilled table (its rows are `tokenizer`'s ids)."""
    import torch

    if len(table) != len(tokenizer):
        raise StaticError(f"the static table has {len(table)} rows but the tokenizer {len(tokenizer)} tokens; the "
                          f"base must share the teacher's tokenizer")
    torch.manual_seed(seed)
    labels = {"id2label": task.id2label, "label2id": task.label2id, "problem_type": task.kind.problem_type}
    specials = sum(len(part) for part in special_frame(tokenizer))
    return student_class()(table, ignored_ids(tokenizer), head, task.num_labels, train_embeddings, labels,
                           max(1, int(max_length) - specials), base)


# ---- Model2Vec's classifier layout --------------------------------------------------------------------------

def _activation(problem_type: Optional[str]) -> str:
    """The head's activation for a saved config's problem_type, as its task kind says (single-label when unset)."""
    from searcher.tasks import DEFAULT, KINDS

    return next((k.activation for k in KINDS.values() if k.problem_type == problem_type), KINDS[DEFAULT].activation)


def save(model, folder) -> None:
    """Model2Vec's classifier files: model.safetensors (`embeddings`), head.safetensors (`head.{i}.weight/bias`),
    config.json (with head_config, and searcher's own `searcher` block to rebuild the module). The caller saves
    tokenizer.json beside them (the tokenizer's save_pretrained)."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    linears = [m for m in model.head if hasattr(m, "weight")]
    save_file({"embeddings": np.ascontiguousarray(model.embed.weight.detach().cpu().float().numpy())},
              str(folder / "model.safetensors"))
    save_file({f"head.{i}.{k}": np.ascontiguousarray(getattr(m, k).detach().cpu().float().numpy())
               for i, m in enumerate(linears) for k in ("weight", "bias")}, str(folder / HEAD_FILE))
    id2label = {int(k): v for k, v in (cfg.id2label or {}).items()}
    classes = [id2label[i] for i in sorted(id2label)] if _activation(cfg.problem_type) != "identity" else None
    config = {
        "model_type": "model2vec", "architectures": ["StaticModel"], "tokenizer_name": cfg.base,
        "apply_pca": cfg.hidden_size, "sif_coefficient": SIF_COEFFICIENT, "hidden_dim": cfg.hidden_size,
        "seq_length": 1000000, "normalize": False, "pooling": "mean", "max_length": cfg.max_length,
        "embedding_dtype": "float32",
        "head_config": {"n_layers": len(linears), "activation": _activation(cfg.problem_type), "classes": classes},
        "searcher": {"family": FAMILY, "static_head": cfg.static_head,
                     "static_train_embeddings": cfg.static_train_embeddings, "num_labels": cfg.num_labels,
                     "id2label": {str(k): v for k, v in id2label.items()}, "problem_type": cfg.problem_type,
                     "ignored_ids": [int(i) for i in np.flatnonzero(model.ignored.cpu().numpy())]},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))


def load(folder):
    """A saved static student back as the torch module searcher trains and measures."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    config = files.read_json(folder / "config.json") or {}
    ours = config.get("searcher") or {}
    if ours.get("family") != FAMILY:
        raise StaticError(f"{folder} is not a static student saved by searcher (no searcher block in config.json)")
    table = load_file(str(folder / "model.safetensors"))["embeddings"]
    id2label = {int(k): v for k, v in ours["id2label"].items()}
    labels = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()},
              "problem_type": ours.get("problem_type")}
    model = student_class()(table, ours["ignored_ids"], ours["static_head"], int(ours["num_labels"]),
                            bool(ours["static_train_embeddings"]), labels, config.get("max_length"),
                            config.get("tokenizer_name") or "")
    import torch

    head = load_file(str(folder / HEAD_FILE))
    linears = [m for m in model.head if hasattr(m, "weight")]
    with torch.no_grad():
        for i, m in enumerate(linears):
            m.weight.copy_(torch.from_numpy(head[f"head.{i}.weight"]))
            m.bias.copy_(torch.from_numpy(head[f"head.{i}.bias"]))
    return model.eval()


def check_loads(folder, texts: list[str], model, tokenizer) -> dict:
    """Load the saved folder with model2vec's StaticModelPipeline and compare its outputs on `texts` with the
    module's own (the same tokens, without special ones): {"ok", "max_abs_diff"}."""
    import torch
    from model2vec.inference import StaticModelPipeline

    pipeline = StaticModelPipeline.from_pretrained(folder)
    theirs = pipeline.head._logits(pipeline.model.encode(list(texts), use_multiprocessing=False))
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=(model.config.max_length or 510) + 2,
                    return_tensors="pt")
    model.eval()
    with torch.inference_mode():
        ours = model(input_ids=enc["input_ids"].to(model.embed.weight.device),
                     attention_mask=enc["attention_mask"].to(model.embed.weight.device)).logits.float().cpu().numpy()
    diff = float(np.abs(np.asarray(theirs, dtype=np.float32).reshape(ours.shape) - ours).max()) if len(texts) else 0.0
    return {"ok": diff < 1e-3, "max_abs_diff": diff}
