"""ONNX export of a trained student (fp32 and dynamic int8), its parity check, and a side-by-side CPU comparison.

`export` writes `onnx/model.onnx` and `onnx/model_quantized.onnx` into a model folder that holds config.json and the
tokenizer: the layout transformers.js and optimum read from a Hub repo. `parity` checks the fp32 graph against
PyTorch on every row; `measure` compares PyTorch, ONNX fp32 and ONNX int8 (quality, size, CPU latency) in one
process with the same thread count, because only ratios measured side by side mean anything on a shared CPU.

This module must not train, publish, render cards or talk to Optuna, and must not change the model's weights or the
files beside onnx/. onnx and onnxruntime are an optional extra (`searcher[export]`): they are imported only when
used, and `require()` lets a study fail before any training when they are missing.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import inspect
import logging
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from searcher.train.batching import collate
from searcher.tasks.metrics import BUILTIN_SET
from searcher.data.tokens import Encoded
from searcher.errors import ExportError, first_line
from searcher import files, timing
from searcher.records import latency
from searcher.config import EXPORT_FORMATS as FORMATS

FILES = {"onnx": Path("onnx/model.onnx"), "onnx-int8": Path("onnx/model_quantized.onnx")}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# 17 is the first opset with a LayerNormalization op (one node per layer norm instead of seven); every onnxruntime
# and transformers.js of the last years runs it, which a newer opset would not guarantee.
OPSET = 17
PARITY_TOLERANCE = 1e-4
INSTALL = "pip install 'searcher[export]'"


def require() -> None:
    """Raise ExportError (one line, with the install command) unless onnx and onnxruntime can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ExportError(f"ONNX export needs onnx and onnxruntime ({first_line(e)}); {INSTALL}") from e


def available() -> bool:
    try:
        require()
    except ExportError:
        return False
    return True


def input_names(model) -> tuple[str, ...]:
    """input_ids and attention_mask, plus token_type_ids only where the model's forward takes them (BERT does,
    DistilBERT does not): a graph input the model ignores would make every consumer feed a useless tensor."""
    accepted = inspect.signature(model.forward).parameters
    names = tuple(name for name in INPUTS if name in accepted)
    if names[:2] != INPUTS[:2]:
        raise ExportError(f"{type(model).__name__}.forward does not take input_ids and attention_mask; only "
                          f"sequence classifiers with those inputs can be exported")
    return names


class _Logits(torch.nn.Module):
    """Positional tensors in, logits out: the TorchScript tracer needs a plain signature and a plain output."""

    def __init__(self, model, names: Sequence[str]):
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, *tensors):
        return self.model(**dict(zip(self.names, tensors))).logits


class LocalExportError(ExportError):
    """The export failed for this machine's reasons (a full disk, a read-only folder), not the model's: the message
    says how to get out, and no card carries it (it says nothing about the student that is published)."""


def _local_error(error: BaseException, where: Path) -> Optional[LocalExportError]:
    """A LocalExportError when a full disk or an unwritable folder is anywhere in the error's chain."""
    seen = 0
    while error is not None and seen < 10:
        text = str(error)
        full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
        if full or "No space left on device" in text or "os error 28" in text:
            return LocalExportError(f"disk full at {getattr(error, 'filename', None) or where}: free space and rerun")
        if isinstance(error, OSError) and error.errno in (errno.EROFS, errno.EACCES):
            return LocalExportError(f"cannot write {error.filename or where} ({error.strerror}): make it writable "
                                    f"and rerun")
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def export(model, folder: Path, formats: Sequence[str] = FORMATS) -> dict[str, Path]:
    """Write the asked formats into folder/onnx/ (replacing that folder whole) and return {format: path}.

    The files are built in a temporary folder beside onnx/ and renamed into place (searcher.files.atomic_dir), so a
    failure leaves the previous onnx/ (or none) and no debris. The model is left in eval mode.
    A full disk or an unwritable folder is a LocalExportError that says so.
    """
    try:
        with timing.phase("ONNX export"):
            return _export(model, folder, formats)
    except Exception as e:
        local = _local_error(e, Path(folder) / "onnx")
        if local is not None:
            raise local from e
        raise


def _export(model, folder: Path, formats: Sequence[str] = FORMATS) -> dict[str, Path]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {tuple(formats)}")
    require()
    folder = Path(folder)
    names = input_names(model)
    with files.atomic_dir(folder / "onnx") as work:
        fp32 = work / FILES["onnx"].name
        _export_fp32(model, names, fp32)
        if "onnx-int8" in formats:
            _quantize(fp32, work / FILES["onnx-int8"].name)
        if "onnx" not in formats:
            fp32.unlink()
        keep = {FILES[f].name for f in formats}
        for leftover in work.iterdir():  # e.g. the quantizer's shape-inference copy
            if leftover.name not in keep:
                leftover.unlink()
    return {f: folder / FILES[f] for f in formats}


def _export_fp32(model, names: Sequence[str], path: Path) -> None:
    model.eval()
    device = next(model.parameters()).device
    # two rows, one padded: a dummy without padding or of length 1 invites shortcuts (mask skipped, single-token
    # paths) that a tracer would freeze into the graph
    dummy = torch.full((2, 8), 5, dtype=torch.long, device=device)
    mask = torch.ones_like(dummy)
    mask[1, 5:] = 0
    tensors = {"input_ids": dummy, "attention_mask": mask, "token_type_ids": torch.zeros_like(dummy)}
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    try:
        with warnings.catch_warnings():
            # the tracer's deprecation notice and its warnings about Python branches on shapes (transformers
            # guards those with is_tracing; parity() is the real check); errors still raise
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r"Exporting aten::index operator")
            # dynamo=False: the TorchScript tracer handles BERT-like classifiers with dynamic axes and needs no
            # onnxscript; the dynamo exporter (torch's default) would add that dependency for no gain here
            torch.onnx.export(_Logits(model, names), tuple(tensors[n] for n in names), str(path), dynamo=False,
                              opset_version=OPSET, input_names=list(names), output_names=["logits"],
                              dynamic_axes=axes, do_constant_folding=True)
    except Exception as e:
        raise ExportError(f"ONNX export of {type(model).__name__} failed ({first_line(e)}); publish without the onnx "
                          f"formats, or report the model class if it is a stock transformers classifier") from e
    finally:
        # the exporter restores the *wrapper's* previous mode (train, as a fresh module) onto the whole tree
        model.eval()


def _quantize(src: Path, dst: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet_quantizer():
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    except Exception as e:
        raise ExportError(f"int8 quantization of {src.name} failed ({first_line(e)}); publish fp32 only "
                          f"(formats=('onnx',)) or use the pinned onnxruntime") from e


class _DropHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quiet_quantizer():
    """quantize_dynamic logs a pre-processing hint on the root logger, which also installs a stderr handler when the
    root has none; a NullHandler keeps that from happening and a filter drops the hint (anything else passes)."""
    root, hint, null = logging.getLogger(), _DropHint(), logging.NullHandler()
    root.addFilter(hint)
    root.addHandler(null)
    try:
        yield
    finally:
        root.removeHandler(null)
        root.removeFilter(hint)


# ---------------------------------------------------------------------------------------------------------------
# Running the exported files


def session(path: Path, threads: int):
    """An onnxruntime session on the CPU with `threads` intra-op threads (the same as torch, for a fair comparison)
    whose idle threads sleep instead of spinning."""
    require()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    # idle onnxruntime workers spin by default; next to torch in one process (a study, `measure`) they took the
    # cores from torch's threads and made its latencies 10-100x worse and erratic on 2 cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: graph-optimizer notices are not the user's business
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError(f"onnxruntime cannot load {path} ({first_line(e)}); export it again") from e


def _feed(sess, batch: dict) -> dict[str, np.ndarray]:
    """The padded torch batch as int64 numpy, only the inputs the graph declares (zeros for token types the
    tokenizer did not produce)."""
    out = {}
    for inp in sess.get_inputs():
        if inp.name in batch:
            out[inp.name] = batch[inp.name].numpy().astype(np.int64, copy=False)
        elif inp.name == "token_type_ids":
            out[inp.name] = np.zeros_like(batch["input_ids"].numpy(), dtype=np.int64)
        else:
            raise ExportError(f"the ONNX graph wants input {inp.name!r}, which searcher does not produce; "
                              f"export the model again with searcher.records.export")
    return out


def _chunks(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield np.arange(start, min(start + batch_size, n))


def predict_logits(sess, enc: Encoded, batch_size: int = 64) -> np.ndarray:
    """float32 logits of every row of `enc`, in order."""
    return np.concatenate([sess.run(["logits"], _feed(sess, collate(enc, idx)))[0]
                           for idx in _chunks(len(enc), batch_size)]).astype(np.float32, copy=False)


def _cpu(model):
    return model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).to("cpu")


def torch_logits(model, enc: Encoded, batch_size: int = 64) -> np.ndarray:
    """The same rows and batches through PyTorch on the CPU, in eval mode."""
    model = _cpu(model).eval()
    accepted = set(input_names(model))
    with torch.inference_mode():
        return np.concatenate([
            model(**{k: v for k, v in collate(enc, idx).items() if k in accepted}).logits.float().numpy()
            for idx in _chunks(len(enc), batch_size)])


def parity(model, sess, enc: Encoded, batch_size: int = 64, kind=None, expected: Optional[np.ndarray] = None,
           got: Optional[np.ndarray] = None) -> dict:
    """PyTorch fp32 vs the ONNX session on every row. The spec: the same prediction on every row (class, label set;
    for a regression score, the outputs within the tolerance) and outputs within 1e-4. `expected` and `got`, when
    given, are the two models' outputs on `enc` already computed (measure scores both forms with them)."""
    from searcher.tasks import SingleLabel

    expected = torch_logits(model, enc, batch_size) if expected is None else expected
    got = predict_logits(sess, enc, batch_size) if got is None else got
    return (kind or SingleLabel()).parity(expected, got, PARITY_TOLERANCE)


# ---------------------------------------------------------------------------------------------------------------
# Side-by-side comparison


def _size_mb(model, folder: Path) -> float:
    """What the PyTorch weights take on disk: the folder's safetensors, or 4 bytes a parameter when none is saved."""
    files = list(folder.glob("*.safetensors"))
    size = sum(f.stat().st_size for f in files) if files else sum(
        t.numel() * t.element_size() for t in model.state_dict().values())
    return round(size / 1e6, 3)


def measure(model, folder: Path, enc: Encoded, labels: Optional[np.ndarray] = None,
            metrics_fn: Optional[Callable] = None, formats: Sequence[str] = FORMATS, threads: Optional[int] = None,
            repeats: int = 30, batch_repeats: int = 10, batch_size: int = 64,
            threshold: Optional[float] = None) -> dict[str, dict]:
    """{"pytorch"|"onnx"|"onnx-int8": {metrics..., size_mb, latency keys}} on the CPU, plain floats only.

    Quality is measured on every row of `enc` against `labels` (default: enc.labels). Latency as in
    searcher.records.latency: the median-length example alone, and the first 32 rows as one batch, after warm-up, with
    `threads` (default: torch's current count) for torch and onnxruntime alike. "onnx" also holds its "parity".
    """
    folder = Path(folder)
    labels = enc.labels if labels is None else np.asarray(labels)
    metrics_fn = metrics_fn or BUILTIN_SET  # (logits, labels, threshold) -> scores, as searcher.tasks.metrics.MetricSet
    missing = [str(folder / FILES[f]) for f in formats if not (folder / FILES[f]).is_file()]
    if missing:
        raise ExportError(f"{', '.join(missing)} not found; run searcher.records.export.export(model, folder) first")
    old_threads = torch.get_num_threads()
    threads = int(threads or old_threads)
    torch.set_num_threads(threads)
    try:
        model = _cpu(model).eval()
        sessions = {f: session(folder / FILES[f], threads) for f in formats}
        accepted = set(input_names(model))
        single, batch = latency.inputs(enc)
        n = int(batch["input_ids"].shape[0])

        def run_torch(batch):
            batch = {k: v for k, v in batch.items() if k in accepted}
            return lambda: model(**batch)

        def run_onnx(sess, batch):
            feed = _feed(sess, batch)
            return lambda: sess.run(["logits"], feed)

        def quality(logits):
            return {k: float(v) for k, v in metrics_fn(logits, labels, threshold).items()}

        with timing.phase("parity"):  # every form's accuracy on the split, and ONNX against PyTorch row by row
            # one pass per form over the split: its outputs give both its scores and the parity check
            outputs = {"pytorch": torch_logits(model, enc, batch_size)}
            results: dict[str, dict] = {"pytorch": quality(outputs["pytorch"])}
            results["pytorch"]["size_mb"] = _size_mb(model, folder)
            for f, sess in sessions.items():
                outputs[f] = predict_logits(sess, enc, batch_size)
                results[f] = quality(outputs[f])
                results[f]["size_mb"] = round((folder / FILES[f]).stat().st_size / 1e6, 3)
            if "onnx" in sessions:
                results["onnx"]["parity"] = parity(model, sessions["onnx"], enc, batch_size,
                                                   getattr(metrics_fn, "kind", None), outputs["pytorch"],
                                                   outputs["onnx"])

        # one format after another, each warmed up right before its runs: the thread pools of torch and onnxruntime
        # disturb each other least that way
        with torch.inference_mode():
            results["pytorch"].update(latency.timings(run_torch(single), run_torch(batch), n, threads, repeats,
                                                      batch_repeats))
            for f, sess in sessions.items():
                results[f].update(latency.timings(run_onnx(sess, single), run_onnx(sess, batch), n, threads,
                                                  repeats, batch_repeats))
        return results
    finally:
        torch.set_num_threads(old_threads)

