"""Import published recipes: read hyperparameters from model cards, searcher's own records and finished Optuna
studies, and write them as `[[enqueue]]` blocks for a study file.

`read(source)` returns `Recipe`s: the values searcher can use (exact, never rounded), where each came from, and what
was found but cannot be mapped (reported verbatim, never guessed). `to_toml(recipes, config)` writes the blocks;
with a study config it leaves out what the study fixes anyway and, without clipping, what it cannot take
(`conflicts()` lists those for the CLI). `append(study_path, text)` adds blocks to a study file without touching a
byte of what is already there.

This module must not unpickle anything (`training_args.bin` is a pickle: it is named, never opened), must not reach
the network except for `ModelCard.load(repo_id)` of a Hub id, and writes nothing except in `append`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from searcher.errors import SearcherError, first_line

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib


class RecipeError(SearcherError, ValueError):
    """A source holds no recipe searcher can read, or the imported blocks would break the study file."""


# What an [[enqueue]] block may set, in the order blocks list them.
PARAMETERS = ("learning_rate", "batch_size", "temperature", "alpha", "epochs", "weight_decay", "warmup_ratio",
              "max_grad_norm", "hidden_dropout", "layers", "hidden", "init", "checkpoint")
INTEGERS = {"batch_size", "epochs", "layers", "hidden"}
STUDENT_KEYS = ("layers", "hidden", "init", "checkpoint")

# Published names (normalised: lower case, spaces and hyphens as "_") -> searcher name. Batch size, seed and warmup
# steps need more than a rename and are handled in _map_items.
ALIASES = {
    "learning_rate": "learning_rate", "lr": "learning_rate", "body_learning_rate": "learning_rate",
    "num_epochs": "epochs", "num_train_epochs": "epochs", "epochs": "epochs",
    "weight_decay": "weight_decay",
    "warmup_ratio": "warmup_ratio", "lr_scheduler_warmup_ratio": "warmup_ratio", "warmup_proportion": "warmup_ratio",
    "temperature": "temperature", "distillation_temperature": "temperature", "kd_temperature": "temperature",
    "alpha": "alpha", "distillation_alpha": "alpha",
    "max_grad_norm": "max_grad_norm",
    "hidden_dropout_prob": "hidden_dropout", "hidden_dropout": "hidden_dropout",
}
PER_DEVICE_BATCH = ("train_batch_size", "per_device_train_batch_size", "batch_size")
TOTAL_BATCH = "total_train_batch_size"
BATCH_FACTORS = ("gradient_accumulation_steps", "num_devices")
WARMUP_STEPS = ("lr_scheduler_warmup_steps", "warmup_steps")
SEED = "seed"

LOOKED_FOR = ("looked for a Trainer 'hyperparameters were used during training' list, a SetFit 'Training "
              "Hyperparameters' list, a searcher [[enqueue]] block and searcher_trial.json")
PICKLED = ("hyperparameters are only in training_args.bin, which is a pickled TrainingArguments; searcher does not "
           "unpickle it: nothing to import")
ALPHA_CONVENTION = ("alpha: searcher weighs the label (cross-entropy) loss by alpha and the teacher's by 1 - alpha; "
                    "check that the source used the same convention")
PAIR_NOTE = ("SetFit lists (embedding phase, classifier phase) pairs; pairs with two different values are not "
             "imported: searcher trains the whole student in one phase")
HUB = "https://huggingface.co/"
ROUNDED_IN_SEARCHER_CARDS = {"temperature", "alpha", "weight_decay", "warmup_ratio"}  # card.maybe_round


@dataclass(frozen=True)
class PublishedResult:
    """One published score: what was measured on which data, and where in the source it was found."""

    metric_type: str
    value: float
    metric_name: Optional[str] = None
    dataset_type: Optional[str] = None
    dataset_name: Optional[str] = None
    dataset_config: Optional[str] = None
    dataset_split: Optional[str] = None
    source: str = ""

    def describe(self) -> str:
        data = ", ".join(x for x in (self.dataset_name or self.dataset_type, self.dataset_config, self.dataset_split)
                         if x)
        return f"{self.metric_type} = {_fmt(self.value)}" + (f" ({data})" if data else "")


@dataclass(frozen=True)
class Recipe:
    """What one source says about one training run, in searcher's terms."""

    values: dict[str, Any]  # searcher parameter name -> exact value
    provenance: dict[str, str]  # parameter name -> where the value came from
    unmapped: list[str] = field(default_factory=list)  # "name: value" found but not importable, verbatim
    notes: list[str] = field(default_factory=list)  # e.g. "set [study] seed = 33"
    published: list[PublishedResult] = field(default_factory=list)
    source: str = ""
    link: Optional[str] = None  # https://huggingface.co/<id> for Hub ids
    base_model: Optional[str] = None  # the student's starting checkpoint, when the source names one


@dataclass(frozen=True)
class Fit:
    """A recipe measured against a study: what goes into its [[enqueue]] block and what is left out, and why."""

    values: dict[str, Any]
    same: list[str]  # "epochs = 8": the study already trains with this value (fixed, or searcher's default)
    conflicts: list[str]  # one line each: the value, why it cannot be imported, and the key to change


# ---------------------------------------------------------------------------------------------------------------
# Reading


def read(source: str) -> list[Recipe]:
    """Recipes from SOURCE: a card file, a card folder, a Hub id (owner/name), a searcher_trial.json, or a finished
    Optuna study as STORAGE_URL::STUDY_NAME (one recipe per complete trial, best first)."""
    source = str(source)
    if source.startswith(HUB):  # a pasted model page URL
        source = "/".join(source[len(HUB):].split("/")[:2])
    path = Path(source).expanduser()
    if path.is_dir():
        return [_read_folder(path, source)]
    if path.is_file():
        if path.suffix.lower() == ".json":
            return [_read_trial_json(path, source)]
        return [_read_card_file(path, source)]
    if "::" in source:
        return _read_study(source)
    if path.suffix.lower() in (".md", ".json", ".txt") or source.startswith((".", "/", "~")):
        raise RecipeError(f"{source} does not exist; check the path of the card or searcher_trial.json")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", source) and not source.startswith((".", "/", "~")):
        return [_read_hub(source)]
    raise RecipeError(f"{source} is not a card file, a folder, a Hub id (owner/name), a searcher_trial.json or "
                      f"STORAGE_URL::STUDY_NAME; check the path")


def _read_folder(folder: Path, source: str) -> Recipe:
    # searcher_trial.json holds every value exactly; the card prints some of them rounded
    if (folder / "searcher_trial.json").is_file():
        return _read_trial_json(folder / "searcher_trial.json", source)
    card = next((folder / n for n in ("README.md", "readme.md", "README.MD") if (folder / n).is_file()), None)
    pickled = (folder / "training_args.bin").is_file()
    if card is None:
        if pickled:
            raise RecipeError(f"{source}: {PICKLED}")
        raise RecipeError(f"no hyperparameters in {source}: it has no README.md and no searcher_trial.json")
    return _from_card(_read_text(card), source, pickled=pickled)


def _read_card_file(path: Path, source: str) -> Recipe:
    return _from_card(_read_text(path), source, pickled=(path.parent / "training_args.bin").is_file())


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"cannot read {path}: {first_line(e)}") from e


def _read_hub(repo_id: str) -> Recipe:
    from huggingface_hub import ModelCard

    try:
        card = ModelCard.load(repo_id, ignore_metadata_errors=True)
    except Exception as e:  # noqa: BLE001 - unknown repo, no README, no network: all mean "cannot read it"
        raise RecipeError(f"cannot read the model card of {repo_id} from the Hub ({first_line(e)}); check the id, "
                          f"or download its README.md and pass the file") from e
    try:
        return _from_card(card.content, repo_id, link=HUB + repo_id)
    except RecipeError as e:
        if _hub_has_file(repo_id, "training_args.bin"):
            raise RecipeError(f"{repo_id}: {PICKLED}") from e
        raise


def _hub_has_file(repo_id: str, filename: str) -> bool:
    try:
        from huggingface_hub import HfApi

        return bool(HfApi().file_exists(repo_id, filename))
    except Exception:  # noqa: BLE001 - only used to make an error message more precise
        return False


# ---------------------------------------------------------------------------------------------------------------
# Model cards


def _from_card(text: str, source: str, link: Optional[str] = None, pickled: bool = False) -> Recipe:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    meta, eval_results, body, problem = _front_matter(text)
    searcher_card = ("generated_from_searcher" in (meta.get("tags") or []) or
                     "generated by searcher" in text[:4000] or "generated_from_searcher" in text[:4000])

    values: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    unmapped: list[str] = []
    notes: list[str] = []

    block = _enqueue_block(body)
    if block is not None:
        for key, value in block.items():
            if key in PARAMETERS:
                values[key] = value
                provenance[key] = f"{key} = {_fmt(value)} (the card's [[enqueue]] block)"
            else:
                unmapped.append(f"{key} = {_fmt(value)} (in the card's [[enqueue]] block; not a searcher parameter)")

    items = _hyperparameter_items(body)
    if block is None and not items:
        if pickled:
            raise RecipeError(f"{source}: {PICKLED}")
        raise RecipeError(f"no hyperparameters in {source}: {LOOKED_FOR}")

    m = _map_items(items, "card hyperparameters")
    for key, value in m.values.items():
        if key not in values:
            values[key] = value
            provenance[key] = m.provenance[key] + (" (fixed in the source study, so not in its [[enqueue]] block)"
                                                   if block is not None else "")
    unmapped += m.unmapped
    notes += m.notes

    # temperature and alpha are often stated outside the Trainer's list (a "Distillation" section, prose); a card
    # that never mentions distillation is not searched for them (a "temperature" there means something else)
    if ("temperature" not in values or "alpha" not in values) and re.search(r"distil", text, re.IGNORECASE):
        extra = _distillation_values(body)
        for key in ("temperature", "alpha"):
            if key not in values and key in extra:
                values[key], provenance[key] = extra[key]
    if searcher_card:
        for key in set(values) & (ROUNDED_IN_SEARCHER_CARDS - set(block or {})):
            provenance[key] += " (searcher's card prints it with at most 4 decimals: its searcher_trial.json is exact)"
    if "alpha" in values and not searcher_card:
        notes.append(ALPHA_CONVENTION)

    base_model = _student(meta, body, searcher_card, values, provenance, notes)
    if problem:
        notes.append(f"the card's front matter could not be read in full ({problem}); its model-index was not used")
    if pickled:
        notes.append("training_args.bin was not read (a pickled TrainingArguments; searcher does not unpickle it)")
    published = _published(eval_results, body)
    return Recipe(values=_ordered(values), provenance=provenance, unmapped=unmapped, notes=_unique(notes),
                  published=published, source=source, link=link, base_model=base_model)


def _front_matter(text: str) -> tuple[dict, list, str, Optional[str]]:
    """(metadata, eval results, body, what went wrong). Unreadable YAML or model-index is reported, not fatal."""
    if not re.match(r"\s*---[ \t]*\n", text):  # no front matter (or a flattened card: its YAML is lost)
        return {}, [], text, None
    import logging

    from huggingface_hub import ModelCard

    try:
        card = ModelCard(text, ignore_metadata_errors=False)
        return card.data.to_dict(), list(card.data.eval_results or []), card.text, None
    except Exception as e:  # noqa: BLE001 - a bad model-index, YAML that is not a mapping, not YAML at all
        problem = first_line(e).split(" Pass `ignore_metadata_errors")[0]  # its advice is for API users
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)  # it would warn again about what `problem` already says
    try:
        card = ModelCard(text, ignore_metadata_errors=True)
        return card.data.to_dict(), [], card.text, problem
    except Exception:  # noqa: BLE001
        return {}, [], text, problem
    finally:
        logger.setLevel(level)


# A bullet item: "- name: value", "* **name**: value", "- **name:** value". Names are up to five words, each
# starting with a letter, so that "- lr 2e-05 - batch: 16" cannot swallow the next item.
_NAME = r"(?:\*\*|__|`)?[A-Za-z][\w.()/'-]*(?:[ \t][A-Za-z(][\w.()/'-]*){0,4}(?:\*\*|__|`)?"
_ITEM = re.compile(r"(?:^|(?<=\s))[-*+][ \t]+(?P<name>" + _NAME + r")[ \t]*:(?!//)")
_HEADING = re.compile(r"(?:^|(?<=\s))#{1,6}[ \t]+\S|```")
_HP_ANCHOR = re.compile(r"hyper-?parameters\s+(?:were\s+)?used\s+(?:during|for|in)\s+training|"
                        r"(?:^|(?<=\s))#{1,6}[ \t]+(?:training[ \t]+)?hyper-?parameters\b", re.IGNORECASE)


def _strip_markup(s: str) -> str:
    return s.strip().strip("*_`").strip()


def _key(name: str) -> str:
    return re.sub(r"[\s-]+", "_", _strip_markup(name).lower())


def _items(segment: str) -> list[tuple[str, str]]:
    """(name, raw value) for each bullet item in a segment, on separate lines or flattened onto one line."""
    out = []
    if "\n" not in segment.strip():  # a card flattened onto one line: items are wherever a bullet starts one
        segment = segment.strip()
        first = _ITEM.search(segment)
        return _split_items(segment[first.start():]) if first else []
    lines = segment.split("\n")
    for i, line in enumerate(lines):
        if not re.match(r"\s*[-*+][ \t]", line):
            continue
        # an indented line right after an item continues it (the Trainer's multi-line optimizer description)
        for nxt in lines[i + 1:]:
            if nxt.startswith((" ", "\t")) and nxt.strip() and not re.match(r"\s*[-*+][ \t]", nxt):
                line += " " + nxt.strip()
            else:
                break
        out += _split_items(line)  # one line may still hold several items (a partly flattened list)
    return out


def _split_items(text: str) -> list[tuple[str, str]]:
    matches = list(_ITEM.finditer(text))
    out = []
    for j, m in enumerate(matches):
        end = matches[j + 1].start() if j + 1 < len(matches) else len(text)
        value = re.sub(r"^(?:\*\*|__)\s*", "", text[m.end():end].strip()).strip()
        out.append((_strip_markup(m.group("name")), value))
    return out


def _section(body: str, start: int) -> str:
    end = _HEADING.search(body, start)
    return body[start:end.start() if end else len(body)]


def _hyperparameter_items(body: str) -> list[tuple[str, str, str]]:
    """(name, key, raw value) from every hyperparameter list in the card (Trainer, SetFit, hand-written)."""
    out, seen = [], set()
    for anchor in _HP_ANCHOR.finditer(body):
        for name, value in _items(_section(body, anchor.end())):
            key = _key(name)
            if key not in seen:
                seen.add(key)
                out.append((name, key, value))
    return out


def _enqueue_block(body: str) -> Optional[dict]:
    """The parameters of searcher's "Reproduce" block: a ```toml fence holding exactly one [[enqueue]] table.
    The study file shown below it (in <details>) may hold other trials' [[enqueue]] tables: it starts with
    comments or [study], so it is never taken for this one."""
    for m in re.finditer(r"```toml[ \t]*\n(.*?)```", body, re.DOTALL):
        code = m.group(1)
        if not code.lstrip().startswith("[[enqueue]]"):
            continue
        try:
            doc = tomllib.loads(code)
        except tomllib.TOMLDecodeError:
            continue
        if set(doc) == {"enqueue"} and len(doc["enqueue"]) == 1:
            return doc["enqueue"][0]
    return None


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+(?![\d.])|\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# trailing text that makes the leading number only part of the value: a range, a product, a per-phase pair
_NOT_ALONE = re.compile(r"^(?:-|–|to\b|/|x\b|\*|\.\.|,\s*[-+.\d])", re.IGNORECASE)


def _number(raw: str) -> Optional[int | float]:
    """The number a value starts with ("2e-05", "8 epochs", "0.1 (10%)"); None for text, ranges and pairs."""
    s = _strip_markup(raw)
    m = _NUMBER.match(s)
    if not m or _NOT_ALONE.match(s[m.end():].strip()):
        return None
    text = m.group(0).replace(",", "")
    value: int | float = float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _pair(raw: str) -> Optional[list]:
    """SetFit's "(16, 16)": the numbers of a parenthesised tuple, or None."""
    m = re.fullmatch(r"\(\s*([^()]*)\s*\)", _strip_markup(raw))
    if not m:
        return None
    parts = [p.strip() for p in m.group(1).split(",") if p.strip()]
    numbers = [_number(p) for p in parts]
    return numbers if len(numbers) >= 2 and all(n is not None for n in numbers) else None


@dataclass
class _Mapped:
    values: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    unmapped: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def _typed(key: str, value: int | float) -> Optional[int | float]:
    """A number as the type searcher's parameter has; None where it cannot be (2.5 epochs)."""
    if key in INTEGERS:
        if isinstance(value, float):
            return int(value) if value.is_integer() else None
        return value
    return float(value)


def _map_items(items: list[tuple[str, str, str]], origin: str) -> _Mapped:
    """Published (name, key, raw value) items in searcher's terms. What does not map is kept verbatim."""
    out = _Mapped()
    batch: dict[str, tuple[str, int]] = {}  # key -> (line, value)
    for name, key, raw in items:
        line = f"{name}: {raw}"
        pair = _pair(raw)
        if pair is not None:
            if len(set(pair)) != 1 or not (key in ALIASES or key in PER_DEVICE_BATCH or key == SEED):
                out.unmapped.append(line)
                if len(set(pair)) != 1:
                    out.notes.append(PAIR_NOTE)
                continue
            number = pair[0]
            line += " (the same in both SetFit phases)"
            where = f"{line} ({origin})"
        else:
            number = _number(raw)
            where = f"{line} ({origin})"

        if key == SEED:
            if isinstance(number, int) or (isinstance(number, float) and number.is_integer()):
                out.notes.append(f"set [study] seed = {int(number)} ({line}, {origin})")
            else:
                out.unmapped.append(line)
        elif key in PER_DEVICE_BATCH or key == TOTAL_BATCH or key in BATCH_FACTORS:
            if number is None or _typed("batch_size", number) is None or number < 1:
                out.unmapped.append(line)
            else:
                batch[key] = (line, int(number))
        elif key in WARMUP_STEPS:
            # transformers 5 takes warmup_steps below 1 as a ratio of the training steps
            if number is not None and 0 < number < 1:
                out.values["warmup_ratio"] = float(number)
                out.provenance["warmup_ratio"] = f"{line} ({origin}; a value below 1 is a ratio of the training steps)"
            elif number == 0:
                out.values["warmup_ratio"] = 0.0
                out.provenance["warmup_ratio"] = where
            else:
                out.unmapped.append(line)  # a step count: the ratio depends on the data size, which we do not know
        elif key in ALIASES:
            target = ALIASES[key]
            value = _typed(target, number) if number is not None else None
            if value is None or target in out.values:
                out.unmapped.append(line)
            else:
                out.values[target] = value
                out.provenance[target] = where
        else:
            out.unmapped.append(line)

    if batch:
        factors = [batch[k] for k in BATCH_FACTORS if k in batch]
        per_device = next((batch[k] for k in PER_DEVICE_BATCH if k in batch), None)
        if TOTAL_BATCH in batch:
            line, total = batch[TOTAL_BATCH]
            parts = [x[0] for x in ([per_device] if per_device else []) + factors]
            out.values["batch_size"] = total
            out.provenance["batch_size"] = (f"{line} ({origin}" + (f"; from {', '.join(parts)}" if parts else "") +
                                            ")")
        elif per_device is not None:
            total = per_device[1] * math.prod(f[1] for f in factors)
            out.values["batch_size"] = total
            if factors:
                product = " x ".join(x[0] for x in [per_device] + factors)
                out.provenance["batch_size"] = f"{product} = {total} ({origin})"
            else:
                out.provenance["batch_size"] = f"{per_device[0]} ({origin})"
        else:
            out.unmapped.extend(x[0] for x in factors)
    return out


_PROSE_VALUE = re.compile(r"\b(?P<name>(?:distillation[ \t]+)?temperature|alpha)(?:[ \t]*\(?T\)?)?"
                          r"[ \t]*(?:[:=]|of\b)[ \t]*(?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)",
                          re.IGNORECASE)


def _distillation_values(body: str) -> dict[str, tuple[float, str]]:
    """temperature and alpha stated anywhere outside code: "- Temperature: 2", "distillation temperature of 4"."""
    text = re.sub(r"```.*?```|<details>.*?</details>", " ", body, flags=re.DOTALL)
    found: dict[str, tuple[float, str]] = {}
    for name, raw in _items(text):
        target = ALIASES.get(_key(name))
        number = _number(raw)
        if target in ("temperature", "alpha") and target not in found and number is not None:
            found[target] = (float(number), f"{name}: {raw} (card text)")
    for m in _PROSE_VALUE.finditer(text):
        target = "alpha" if m.group("name").lower() == "alpha" else "temperature"
        if target not in found:
            found[target] = (float(m.group("value")), f"\"{m.group(0)}\" (card text)")
    return found


_MINIATURE = re.compile(r"(?:google/)?bert_uncased_L-(\d+)_H-(\d+)_A-(\d+)", re.IGNORECASE)


def _miniature(checkpoint: str) -> Optional[tuple[int, int]]:
    m = _MINIATURE.fullmatch(checkpoint.strip())
    if m and int(m.group(2)) % 64 == 0 and int(m.group(3)) == int(m.group(2)) // 64:
        return int(m.group(1)), int(m.group(2))
    return None


def _student(meta: dict, body: str, searcher_card: bool, values: dict, provenance: dict,
             notes: list) -> Optional[str]:
    """Fill layers/hidden/init from the card; returns the student's starting checkpoint if the card names one."""
    if searcher_card:
        # searcher's base_model is the teacher for a teacher-initialised student; its Distillation section is exact
        m = re.search(r"Student:\s*L=(\d+),\s*H=(\d+)", body)
        init = re.search(r"Initialisation:\s*(pretrained checkpoint|the teacher's|random)", body)
        ckpt = re.search(r"Initialisation:\s*pretrained checkpoint\s*\[?([^\]\s(]+)", body)
        kind = {"pretrained checkpoint": "pretrained", "the teacher's": "teacher", "random": "random"}.get(
            init.group(1)) if init else None
        found = {}
        if m:
            found["layers"] = int(m.group(1))
            if kind != "teacher":
                found["hidden"] = int(m.group(2))
        if kind:
            found["init"] = kind
        for key, value in found.items():
            if key not in values and "checkpoint" not in values:
                values[key] = value
                provenance[key] = f"{key} = {_fmt(value)} (the card's Distillation section)"
        return ckpt.group(1) if ckpt else None

    base = meta.get("base_model")
    where = "base_model in the front matter"
    if isinstance(base, list):
        base = base[0] if base else None
    if not base:
        m = re.search(r"fine-tuned version of\s+\[([^\]]+)\]", body) or \
            re.search(r"fine-tuned version of\s+([\w./-]+[\w])", body)
        if m:
            base, where = m.group(1).strip(), "\"fine-tuned version of\" in the card text"
    if not base or not isinstance(base, str):
        return None
    shape = _miniature(base)
    if shape is None:
        notes.append(f"student checkpoint {base} ({where}): add it to [student] checkpoints")
        return base
    for key, value in (("layers", shape[0]), ("hidden", shape[1]), ("init", "pretrained")):
        if key not in values:
            values[key] = value
            provenance[key] = f"{key} = {_fmt(value)} (from {base}, {where})"
    return base


_RESULTS_ANCHOR = re.compile(r"achieves the following results on the (?P<what>evaluation set|[\w -]+? set)"
                             r"(?:\s*\((?P<split>[^)]*)\))?\s*:", re.IGNORECASE)
_TEST_ANCHOR = re.compile(r"On the test split\s*:", re.IGNORECASE)
_DATASET = re.compile(r"on the \[?(?P<name>[^\]\[()\n]+?)\]?(?:\(https?://[^)\s]*?/datasets/(?P<id>[^)\s]+)\))?"
                      r"(?:\s*\((?P<config>[^)\n]+)\))?\s+dataset\b")


def _results_items(body: str, anchor: re.Match) -> list[tuple[str, str]]:
    """The bullets right after a results sentence: on following lines until a non-bullet line, or flattened."""
    rest = _section(body, anchor.end())
    stop = _TEST_ANCHOR.search(rest)
    if stop:
        rest = rest[:stop.start()]
    if "\n" in rest.strip():
        lines = []
        for line in rest.lstrip("\n").split("\n"):
            if not re.match(r"\s*[-*+][ \t]", line):
                break
            lines.append(line)
        rest = "\n".join(lines)
    return _items(rest)


def _metric(name: str, raw: str) -> Optional[tuple[str, str, float]]:
    number = _number(raw)
    if number is None:
        return None
    name = _strip_markup(name)
    return _key(name), name, float(number)


def _published(eval_results: list, body: str) -> list[PublishedResult]:
    """model-index first (exact values); the results sentence adds what it lacks (and the split, which the Trainer's
    model-index leaves out); the last row of the training-results table only when there is nothing else."""
    anchor = _RESULTS_ANCHOR.search(body)
    text_split = None
    if anchor:
        inner = (anchor.group("split") or "").strip()
        if inner and re.fullmatch(r"[\w.-]+", inner):
            text_split = inner
        elif inner:
            text_split = inner  # e.g. "1000 rows held out of train"
        elif any(r.dataset_split for r in eval_results):
            text_split = next(r.dataset_split for r in eval_results if r.dataset_split)  # the same evaluation
        elif anchor.group("what").lower() == "evaluation set":
            text_split = "validation"  # the Trainer's evaluation set: the validation split it was given

    out: list[PublishedResult] = []
    for r in eval_results:
        config = r.dataset_config or (r.dataset_args if isinstance(r.dataset_args, str) else None)
        split, source = r.dataset_split, "model-index"
        if not split and text_split:
            split, source = text_split, "model-index; split from the card's results sentence"
        if not isinstance(r.metric_value, (int, float)) or isinstance(r.metric_value, bool):
            continue
        out.append(PublishedResult(metric_type=r.metric_type, value=float(r.metric_value),
                                   metric_name=r.metric_name, dataset_type=r.dataset_type,
                                   dataset_name=r.dataset_name, dataset_config=config, dataset_split=split,
                                   source=source))

    first = out[0] if out else None
    dataset = _DATASET.search(body)
    ds = {"dataset_type": first.dataset_type if first else None, "dataset_name": first.dataset_name if first else None,
          "dataset_config": first.dataset_config if first else None}
    if first is None and dataset and dataset.group("name").strip() not in ("None", "unknown"):
        name = dataset.group("name").strip()
        ds = {"dataset_type": dataset.group("id") or name, "dataset_name": name,
              "dataset_config": dataset.group("config")}

    have = {(p.metric_type, p.dataset_split) for p in out}
    for anchor_match, split in ((anchor, text_split), (_TEST_ANCHOR.search(body), "test")):
        if anchor_match is None:
            continue
        for name, raw in _results_items(body, anchor_match):
            metric = _metric(name, raw)
            if metric and (metric[0], split) not in have:  # model-index has the exact value: keep that one
                have.add((metric[0], split))
                out.append(PublishedResult(metric_type=metric[0], metric_name=metric[1], value=metric[2],
                                           dataset_split=split, source="the card's results sentence", **ds))
    if out:
        return out
    return _table_results(body, ds)


def _table_results(body: str, ds: dict) -> list[PublishedResult]:
    """The last row of the "Training results" table: the final evaluation (Trainer, SetFit)."""
    anchor = re.search(r"#{1,6}[ \t]+Training results", body, re.IGNORECASE)
    if not anchor:
        return []
    segment = _section(body, anchor.end())
    sep = re.search(r"\|(?:[ \t]*:?-{3,}:?[ \t]*\|)+", segment)
    if not sep:
        return []
    n = sep.group(0).count("|") - 1
    header = [c.strip() for c in segment[:sep.start()].split("|")[-(n + 1):-1]]
    tokens = segment[sep.end():].split("|")
    rows, i = [], 1
    while i + n <= len(tokens):
        group = tokens[i:i + n + 1]
        rows.append([c.strip() for c in group[:n]])
        if len(group) <= n or group[n].strip():
            break
        i += n + 1
    if not rows or len(header) != n:
        return []
    last = dict(zip(header, rows[-1]))
    out = []
    for name, raw in last.items():
        if name.lower() in ("training loss", "epoch", "step"):
            continue
        metric = _metric("loss" if name.lower() == "validation loss" else name, raw)
        if metric:
            out.append(PublishedResult(metric_type=metric[0], metric_name=name, value=metric[2],
                                       dataset_split="validation",
                                       source=f"last row of the card's Training results table (epoch "
                                              f"{last.get('Epoch', '?')})", **ds))
    return out


# ---------------------------------------------------------------------------------------------------------------
# searcher's own records: searcher_trial.json and finished studies


def _read_trial_json(path: Path, source: str) -> Recipe:
    try:
        record = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise RecipeError(f"{path} is not valid JSON ({first_line(e)})") from e
    if not isinstance(record, dict) or not isinstance(record.get("params"), dict):
        raise RecipeError(f"no hyperparameters in {source}: {path.name} has no \"params\"; {LOOKED_FOR}")
    repo_id = record.get("repo_id")
    origin = f"{path.name}, trial {record.get('trial')} of study {record.get('study')!r}"
    values, provenance, unmapped, notes, base_model = _searcher_values(
        record["params"], record.get("hyperparams") or {}, record.get("student") or {}, origin)
    published = _searcher_published(record.get("metrics") or {}, record.get("test_metrics") or {},
                                     record.get("dataset") or {}, origin)
    return Recipe(values=values, provenance=provenance, unmapped=unmapped, notes=notes, published=published,
                  source=source, link=HUB + repo_id if repo_id else None, base_model=base_model)


def _searcher_values(params: dict, hyperparams: dict, student: dict, origin: str):
    """A searcher trial's params (exact), then the values its study fixed (the `hyperparams` record)."""
    values, provenance, unmapped, notes = {}, {}, [], []
    for key, value in params.items():
        if key in PARAMETERS:
            values[key] = value
            provenance[key] = f"{key} = {_fmt(value)} (trial params, {origin})"
        else:
            unmapped.append(f"{key}: {_fmt(value)} (trial param; not a searcher parameter)")
    for key, value in hyperparams.items():
        if key == SEED:
            notes.append(f"set [study] seed = {value} (the source study's seed)")
        elif key in PARAMETERS and key not in values and value is not None:
            values[key] = value
            provenance[key] = f"{key} = {_fmt(value)} (hyperparams, {origin}; fixed in the source study)"
    # the student, where the study fixed it; a grid student's checkpoint is derived from layers/hidden
    init = params.get("init", student.get("init"))
    fixed_student = {"init": init, "layers": student.get("layers")}
    if init != "teacher":
        fixed_student["hidden"] = student.get("hidden")
    if "checkpoint" not in params:
        for key, value in fixed_student.items():
            if key not in values and value is not None:
                values[key] = value
                provenance[key] = f"{key} = {_fmt(value)} (student, {origin}; fixed in the source study)"
    base_model = params.get("checkpoint") or (student.get("checkpoint") if init == "pretrained" else None)
    return _ordered(values), provenance, unmapped, notes, base_model


def _searcher_published(metrics: dict, test_metrics: dict, dataset: dict, origin: str) -> list[PublishedResult]:
    name = dataset.get("dataset") or Path(str((dataset.get("files") or {}).get("train", "") or "")).name or None
    splits = dataset.get("splits") or {}
    valid = (f"{dataset['holdout']} rows held out of train" if dataset.get("holdout") else
             splits.get("validation") or "validation")
    out = []
    for split, table in ((valid, metrics), (splits.get("test") or "test", test_metrics)):
        for key, value in table.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(PublishedResult(metric_type=key, value=float(value), metric_name=key,
                                           dataset_type=name, dataset_name=name, dataset_config=dataset.get("subset"),
                                           dataset_split=split, source=origin))
    return out


def open_study(source: str):
    """searcher.storage.open_study, which this was (kept for recipes' callers). Imported when called: at the top of
    this module it would load optuna with `searcher --help`, since the CLI imports this module for RecipeError."""
    from searcher.storage import open_study as storage_open_study

    return storage_open_study(source)


def _read_study(source: str) -> list[Recipe]:
    import optuna

    from searcher import records, storage

    study, shown = open_study(source)
    trials = records.completed(study)  # a warm-started study's copies are another study's trials
    if not trials:
        raise RecipeError(f"{shown}: the study has no complete trials: nothing to import")
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    trials = sorted(trials, key=lambda t: ((-t.values[0] if maximize else t.values[0]), t.number))
    dataset = study.user_attrs.get(storage.ATTR_DATASET) or {}
    metric_names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    return [_trial_recipe(t, rank, len(trials), shown, dataset, metric_names) for rank, t in enumerate(trials, 1)]


def _trial_recipe(trial, rank: int, n: int, shown: str, dataset: dict, metric_names: list) -> Recipe:
    from searcher import records

    origin = f"trial {trial.number}"
    source = f"{shown} trial {trial.number} (rank {rank} of {n})"
    hyperparams = trial.user_attrs.get(records.HYPERPARAMS)
    notes: list[str] = []
    base_model = None
    if isinstance(hyperparams, dict):  # a searcher trial
        values, provenance, unmapped, notes, base_model = _searcher_values(
            trial.params, hyperparams, trial.user_attrs.get(records.STUDENT) or {}, origin)
        published = _searcher_published(trial.user_attrs.get(records.METRICS) or {},
                                        trial.user_attrs.get(records.TEST_METRICS) or {}, dataset, origin)
    else:  # any other Optuna study (Trainer.hyperparameter_search names its params like TrainingArguments)
        items = [(k, _key(k), _fmt(v) if not isinstance(v, str) else v) for k, v in trial.params.items()]
        m = _map_items(items, f"{origin} params")
        values, provenance, unmapped, notes = _ordered(m.values), m.provenance, m.unmapped, m.notes
        if "alpha" in values:
            notes.append(ALPHA_CONVENTION)
        published = []
    if not published:
        published = [PublishedResult(metric_type=str(metric), value=float(v), source=f"{origin} value")
                     for metric, v in zip(metric_names, trial.values)]
    return Recipe(values=values, provenance=provenance, unmapped=unmapped, notes=_unique(notes), published=published,
                  source=source, link=None, base_model=base_model)


# ---------------------------------------------------------------------------------------------------------------
# Writing


def _fmt(value: Any) -> str:
    """A value as TOML writes it: repr for floats (round-trips exactly), JSON for strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def _ordered(values: dict) -> dict:
    return {k: values[k] for k in sorted(values, key=lambda k: (PARAMETERS.index(k) if k in PARAMETERS else 99, k))}


def _unique(items: list) -> list:
    return list(dict.fromkeys(items))


def _section_of(key: str) -> str:
    if key == "checkpoint":
        return "[student] checkpoints"
    return f"[student] {key}" if key in STUDENT_KEYS else f"[search] {key}"


def _describe_dim(dim) -> str:
    from searcher.config import Choices, FloatRange, IntRange

    if isinstance(dim, Choices):
        return "[" + ", ".join(_fmt(v) for v in dim.values) + "]"
    if isinstance(dim, (FloatRange, IntRange)):
        return f"[{_fmt(dim.low)}, {_fmt(dim.high)}]" + (" (log)" if dim.log else "")
    return _fmt(dim.value)


def fit(recipe: Recipe, config=None) -> Fit:
    """Measure a recipe against a study (searcher.config.StudyConfig). Values the study fixes to the same value are
    left out; values it cannot take are left out too (never clipped) with one line naming the key to change."""
    values = dict(recipe.values)
    if config is None:
        return Fit(values=values, same=[], conflicts=[])
    from searcher.config import Choices, FloatRange, Fixed, IntRange
    from searcher.space import dimensions

    dims = dimensions(config)
    conflicts: list[str] = []
    if "checkpoint" in dims and "checkpoint" not in values and \
            (recipe.base_model or any(k in values for k in STUDENT_KEYS)):
        # a checkpoint-list study names its student by checkpoint, not by layers/hidden/init
        init = values.pop("init", "pretrained")
        layers, hidden = values.pop("layers", None), values.pop("hidden", None)
        miniature = (f"google/bert_uncased_L-{layers}_H-{hidden}_A-{hidden // 64}"
                     if isinstance(layers, int) and isinstance(hidden, int) else None)
        if init != "pretrained":
            conflicts.append(f"init = {_fmt(init)}: this study trains pretrained [student] checkpoints only: "
                             f"not imported")
        elif recipe.base_model or miniature:
            values["checkpoint"] = recipe.base_model or miniature
        else:
            conflicts.append(f"layers = {_fmt(layers)}: this study uses a [student] checkpoints list and the source "
                             f"names no checkpoint: not imported")
    elif "checkpoint" not in dims and "checkpoint" in values:
        shape = _miniature(str(values["checkpoint"]))
        if shape and "layers" not in values:
            values.pop("checkpoint")
            values.update(layers=shape[0], hidden=shape[1], init="pretrained")

    kept, same = {}, []
    builtin = _builtin_defaults()
    for key, value in _ordered(values).items():
        dim = dims.get(key)
        shown = f"{key} = {_fmt(value)}"
        if dim is None and key in builtin and value == builtin[key]:
            same.append(shown)  # e.g. max_grad_norm = 1.0: what searcher uses when the study does not search it
        elif dim is None:
            conflicts.append(f"{shown}: this study has no {key} parameter"
                             + (" (it builds students from the [student] layers/hidden grid)" if key == "checkpoint"
                                else " (it uses a [student] checkpoints list)" if key in STUDENT_KEYS else "")
                             + ": not imported")
        elif isinstance(dim, Fixed):
            if dim.value is None:
                conflicts.append(f"{shown}: this study does not choose {key} (its students take the teacher's "
                                 f"size): not imported")
            elif value == dim.value:
                same.append(shown)
            else:
                conflicts.append(f"{shown} conflicts with {_section_of(key)} = {_fmt(dim.value)}, which the study "
                                 f"fixes: make {_section_of(key)} a range or a list to import this value")
        elif isinstance(dim, (FloatRange, IntRange)):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            on_grid = (not isinstance(dim, IntRange) or
                       (isinstance(value, int) and (value - dim.low) % dim.step == 0))
            if number and dim.low <= value <= dim.high and on_grid:
                kept[key] = value
            elif number and dim.low <= value <= dim.high:
                conflicts.append(f"{shown} is not on the step {dim.step} of {_section_of(key)} "
                                 f"{_describe_dim(dim)}: change its step to import this value")
            else:
                conflicts.append(f"{shown} is outside {_section_of(key)} {_describe_dim(dim)}: widen it to import "
                                 f"this value")
        elif isinstance(dim, Choices):
            if value in dim.values:
                kept[key] = value
            else:
                conflicts.append(f"{shown} is not one of {_section_of(key)} {_describe_dim(dim)}: add it to import "
                                 f"this value")
    return Fit(values=kept, same=same, conflicts=conflicts)


def _builtin_defaults() -> dict:
    """Values searcher trains with when a study file does not mention them (searcher.distill.Hyperparams)."""
    import dataclasses

    from searcher.distill import Hyperparams

    return {f.name: f.default for f in dataclasses.fields(Hyperparams)
            if f.name in PARAMETERS and f.default is not dataclasses.MISSING}


def conflicts(recipes: list[Recipe], config) -> list[str]:
    """Every value the study cannot take, one line each naming the source and the key to change (for the CLI)."""
    return [f"{r.source}: {line}" for r in recipes for line in fit(r, config).conflicts]


def _comment(text: str) -> str:
    text = re.sub(r"[\x00-\x08\x0a-\x1f\x7f]+", " ", text)  # a TOML comment ends at a newline
    return f"# {text}".rstrip()


def _bare_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _published_toml(published: list[PublishedResult]) -> str:
    """What the source reported, one inline table per evaluation (dataset, config, split), for the entry's
    `_published` key (searcher.space reads it back; the card compares it with the student on the same data)."""
    groups: dict[tuple, dict[str, float]] = {}
    for p in published:
        where = (p.dataset_type or p.dataset_name, p.dataset_config, p.dataset_split)
        groups.setdefault(where, {}).setdefault(p.metric_type, p.value)
    tables = []
    for (dataset, config, split), metrics in groups.items():
        keys = [f"{k} = {_fmt(v)}" for k, v in (("dataset", dataset), ("config", config), ("split", split)) if v]
        keys.append("metrics = {" + ", ".join(f"{_bare_key(k)} = {_fmt(v)}" for k, v in metrics.items()) + "}")
        tables.append("{" + ", ".join(keys) + "}")
    return "[" + ", ".join(tables) + "]"


def to_toml(recipes: list[Recipe], config=None) -> str:
    """[[enqueue]] blocks, one per recipe, each after comments saying where it came from and what was left out.
    Each block is marked with `_source` (and `_published`, what the source reported), which searcher.space turns
    into the trial's user attrs. Floats are written with repr, so they read back exactly."""
    blocks = []
    for recipe in recipes:
        f = fit(recipe, config)
        lines = [_comment(f"from {recipe.source}" + (f" ({recipe.link})" if recipe.link and
                                                        recipe.link not in recipe.source else ""))]
        lines += [_comment(f"published: {p.describe()} [{p.source}]") for p in recipe.published]
        lines += [_comment(f"{key} from {recipe.provenance.get(key, 'an unrecorded place')}")
                  for key in _ordered(recipe.values)]
        lines += [_comment(f"not imported: {u}") for u in recipe.unmapped]
        lines += [_comment(f"note: {n}") for n in recipe.notes]
        lines += [_comment(c) for c in f.conflicts]
        lines += [_comment(f"{s}: the study already trains with this value") for s in f.same]
        if f.values:
            lines.append("[[enqueue]]")
            lines.append(f"_source = {_fmt(recipe.link or recipe.source)}")
            if recipe.published:
                lines.append(f"_published = {_published_toml(recipe.published)}")
            lines += [f"{key} = {_fmt(value)}" for key, value in f.values.items()]
        else:
            lines.append(_comment("nothing to enqueue from this source"))
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def append(study_path, text: str) -> Path:
    """Add `text` (from to_toml) at the end of a study file, after a blank line, keeping every existing byte.
    The result must still load and its [[enqueue]] entries must fit the study; otherwise the file is left unchanged
    and RecipeError says why."""
    from searcher.config import parse_study
    from searcher.errors import ConfigError
    from searcher.space import check_enqueued

    path = Path(study_path).expanduser()
    if not text.strip():
        raise RecipeError(f"nothing to add to {path}: the import produced no [[enqueue]] blocks")
    if not path.is_file():
        raise RecipeError(f"study file {path} does not exist; pass the .toml file to add the [[enqueue]] blocks to")
    old = path.read_bytes()
    newline = b"\r\n" if b"\r\n" in old else b"\n"
    addition = text.replace("\r\n", "\n").rstrip("\n").encode("utf-8").replace(b"\n", newline) + newline
    lead = b"" if not old or old.endswith(b"\n") else newline
    new = old + lead + newline + addition
    try:
        config = parse_study(tomllib.loads(new.decode("utf-8")), path.resolve())
        check_enqueued(config)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ConfigError) as e:
        why = first_line(e) if isinstance(e, ConfigError) else f"not valid TOML: {first_line(e)}"
        raise RecipeError(f"{path}: adding the imported [[enqueue]] blocks would make the study file invalid "
                          f"({why}); the file is unchanged") from e
    tmp = path.with_name(f".{path.name}.importing")
    try:
        tmp.write_bytes(new)
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
