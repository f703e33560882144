"""Import published recipes: read hyperparameters from model cards, searcher's own records and finished Optuna
studies, and write them as `[[enqueue]]` blocks for a study file.

- `sources.read(source)` dispatches a source to its reader and returns `Recipe`s (`recipe`): the values searcher
  can use (exact, never rounded), where each came from, and what was found but cannot be mapped (verbatim);
- `cards`: model cards of other tools (Trainer, SetFit, hand-written); `own`: searcher's card data and
  searcher_trial.json; `studies`: finished Optuna studies; `names`: published names, from the registry;
- `fit`: a recipe against a study (what fits, what is the same, what conflicts); `writing.to_toml`: the blocks;
  `append`: adding them to a study file without touching a byte of what is there.

Nothing here unpickles (`training_args.bin` is a pickle: it is named, never opened) or reaches the network except
`ModelCard.load(repo_id)` of a Hub id; only `append` writes.
"""

from searcher.errors import RecipeError
from searcher.recipes.append import append
from searcher.recipes.fit import conflicts, fit
from searcher.recipes.recipe import Fit, PublishedResult, Recipe
from searcher.recipes.sources import read
from searcher.recipes.studies import open_study
from searcher.recipes.writing import to_toml

__all__ = ["RecipeError", "append", "conflicts", "fit", "Fit", "PublishedResult", "Recipe", "read", "open_study",
           "to_toml"]
