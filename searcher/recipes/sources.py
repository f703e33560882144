"""Where a recipe comes from: `read(source)` dispatches a card file, a card folder, a Hub id, a searcher_trial.json
or a finished study (STORAGE_URL::STUDY_NAME) to the reader that knows it, and checks what comes back.

Nothing here unpickles (`training_args.bin` is a pickle: it is named, never opened) or writes; the network is reached
only for `ModelCard.load(repo_id)` of a Hub id.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from pathlib import Path

from searcher.errors import RecipeError, first_line
from searcher.recipes.cards import from_card
from searcher.recipes.own import read_trial_json
from searcher.recipes.studies import read_study
from searcher.recipes.recipe import HUB, PICKLED, Recipe, fmt

log = logging.getLogger(__name__)

MAX_CARD_BYTES = 16 * 2 ** 20  # a model card is kilobytes; a bigger file is read up to here (and said so)


def read(source: str) -> list[Recipe]:
    """Recipes from SOURCE: a card file, a card folder, a Hub id (owner/name), a searcher_trial.json, or a finished
    Optuna study as STORAGE_URL::STUDY_NAME (one recipe per complete trial, best first). A value that is not a
    finite number where a number belongs (NaN, inf) is reported, never imported."""
    return [_finite(r) for r in _read(source)]


def _read(source: str) -> list[Recipe]:
    source = str(source)
    if source.startswith(HUB):  # a pasted model page URL
        source = "/".join(source[len(HUB):].split("/")[:2])
    path = Path(source).expanduser()
    if path.is_dir():
        return [_read_folder(path, source)]
    if path.is_file():
        if path.suffix.lower() == ".json":
            return [read_trial_json(path, source)]
        return [_read_card_file(path, source)]
    if "::" in source:
        return read_study(source)
    if path.suffix.lower() in (".md", ".json", ".txt") or source.startswith((".", "/", "~")):
        raise RecipeError(f"{source} does not exist; check the path of the card or searcher_trial.json")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", source) and not source.startswith((".", "/", "~")):
        return [_read_hub(source)]
    raise RecipeError(f"{source} is not a card file, a folder, a Hub id (owner/name), a searcher_trial.json or "
                      f"STORAGE_URL::STUDY_NAME; check the path")



def _finite(recipe: Recipe) -> Recipe:
    bad = {k: v for k, v in recipe.values.items()
           if isinstance(v, float) and not math.isfinite(v)}
    if not bad:
        return recipe
    return dataclasses.replace(
        recipe, values={k: v for k, v in recipe.values.items() if k not in bad},
        unmapped=recipe.unmapped + [f"{k} = {fmt(v)} (not a finite number: not imported)" for k, v in bad.items()])


def _read_folder(folder: Path, source: str) -> Recipe:
    # searcher_trial.json holds every value exactly; the card prints some of them rounded
    if (folder / "searcher_trial.json").is_file():
        return read_trial_json(folder / "searcher_trial.json", source)
    card = next((folder / n for n in ("README.md", "readme.md", "README.MD") if (folder / n).is_file()), None)
    pickled = (folder / "training_args.bin").is_file()
    if card is None:
        if pickled:
            raise RecipeError(f"{source}: {PICKLED}")
        raise RecipeError(f"no hyperparameters in {source}: it has no README.md and no searcher_trial.json")
    return from_card(_read_text(card), source, pickled=pickled)


def _read_card_file(path: Path, source: str) -> Recipe:
    return from_card(_read_text(path), source, pickled=(path.parent / "training_args.bin").is_file())


def _read_text(path: Path) -> str:
    """A card's text, at most MAX_CARD_BYTES of it: what a card says about its training is in its first pages, and
    a huge file must not hold the importer for minutes."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CARD_BYTES + 1)
        text = data[:MAX_CARD_BYTES].decode("utf-8", errors="ignore" if len(data) > MAX_CARD_BYTES else "strict")
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"cannot read {path}: {first_line(e)}; pass a UTF-8 model card (README.md)") from e
    if len(data) > MAX_CARD_BYTES:
        log.warning("import: %s is larger than %d MB; only its first %d MB were read", path,
                    MAX_CARD_BYTES // 2 ** 20, MAX_CARD_BYTES // 2 ** 20)
    return text


def _read_hub(repo_id: str) -> Recipe:
    from huggingface_hub import ModelCard

    try:
        card = ModelCard.load(repo_id, ignore_metadata_errors=True)
    except Exception as e:  # noqa: BLE001 - unknown repo, no README, no network: all mean "cannot read it"
        raise RecipeError(f"cannot read the model card of {repo_id} from the Hub ({first_line(e)}); check the id, "
                          f"or download its README.md and pass the file") from e
    try:
        return from_card(card.content, repo_id, link=HUB + repo_id)
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

