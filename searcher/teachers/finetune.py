"""A teacher fine-tuned once: `base` + `fine_tune` turn a pretrained model into the task's teacher with plain
cross-entropy (the distill loop at alpha = 1), cached per (base, data, settings, seed).

Several workers starting together fine-tune once: the others wait on the lock and reuse the folder. A seed ensemble
is one fine-tune per seed, each cached on its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Optional

from searcher.train import distill
from searcher import files, timing
from searcher.teachers import loading as teacher_loading
from searcher.config import FineTuneConfig
from searcher.data.loading import Task
from searcher.hyperparams import Hyperparams
from searcher.tasks.metrics import MetricSet
from searcher.data.tokens import encode

log = logging.getLogger(__name__)

RECORD = "searcher_teacher.json"


def fine_tuned(base: str, revision, base_identity: str, ft: FineTuneConfig, seed: int, task: Task, compute) -> str:
    """The folder of `base` fine-tuned on the task with `ft` and `seed` (`compute`: searcher.teachers.TeacherCompute), made once."""
    out = Path(compute.cache_dir) / "teachers" / files.cache_key({
        "base": base_identity, "data": task.fingerprint, "max_length": compute.max_length,
        "fine_tune": [ft.epochs, ft.learning_rate, ft.batch_size, ft.weight_decay, ft.warmup_ratio], "seed": seed,
    }, 20)

    def build() -> str:
        log.info("teacher: fine-tuning %s once (%d epochs%s); cached in %s", base, ft.epochs, f", seed {seed}", out)
        with timing.phase("teacher fine-tune"):
            _fine_tune(base, revision, ft, seed, task, compute, out)
        return str(out)

    return files.cached("teacher: fine-tuned cache", out, lambda: _complete(out), build, log)


def _complete(folder: Path) -> Optional[str]:
    """A finished fine-tune's folder (None: there is none): raises unless its record, config and weights are all there
    and match the checksums its record keeps (a crash never leaves a half folder, but a full disk, a copy or a hand
    edit can damage one: it is rebuilt)."""
    if not folder.exists():
        return None
    record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise ValueError("its config or weights are missing")
    for name, digest in record.get("sha256", {}).items():  # records written before checksums have none
        if _sha256(folder / name) != digest:
            raise ValueError(f"{name} does not match its checksum")
    log.info("teacher: reusing fine-tuned %s", folder)
    return str(folder)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _fine_tune(base: str, revision, ft: FineTuneConfig, seed: int, task: Task, compute, out: Path) -> None:
    model, tokenizer = teacher_loading.load_model(base, task, revision, new_head=True)
    train = encode(task.train, tokenizer, compute.max_length, compute.cache_dir, f"{task.fingerprint}:train")
    validation = encode(task.validation, tokenizer, compute.max_length, compute.cache_dir,
                        f"{task.fingerprint}:validation")
    hp = Hyperparams(learning_rate=ft.learning_rate, batch_size=ft.batch_size, temperature=1.0, alpha=1.0,
                     epochs=ft.epochs, weight_decay=ft.weight_decay, warmup_ratio=ft.warmup_ratio, seed=seed)

    primary = task.kind.default_objective

    def report(r: distill.EpochResult) -> None:
        log.info("teacher fine-tune epoch %d: train loss %.4f, validation %s %.4f (%.0fs)",
                 r.epoch, r.train_loss, primary, r.metrics[primary], r.seconds)

    history = distill.train(model, train, None, validation, None, hp, compute.runtime, on_epoch=report,
                            metrics=MetricSet(kind=task.kind))
    with files.atomic_dir(out) as tmp:
        model.to("cpu").save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / RECORD).write_text(json.dumps({
            "base": base, "fine_tune": vars(hp), "history": [vars(r) for r in history],
            "sha256": {f.name: _sha256(f) for f in sorted(tmp.iterdir()) if f.is_file()},
        }, indent=1))
