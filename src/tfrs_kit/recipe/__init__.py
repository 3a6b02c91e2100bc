"""``tk.Recipe``: the whole path from a log to a trained model, settings chosen from the data.

Modules, in the order ``Recipe.fit`` runs them:

- ``_inputs``: the log's columns, one row of attributes per item and user, the
  validation slice carved from the training log;
- ``_settings``: :class:`Settings`, the search space and the settings tried first;
- ``_training``: one model from one setting, stopped on a validation ranking metric;
- ``_search``: the Optuna search within the time budget;
- ``_blend``: the chosen towers beside an iALS factorisation, weighed on the slice;
- ``_report``: :class:`RecipeReport` and :class:`Blend`, what was chosen and why;
- ``_recipe``: :class:`Recipe`.
"""

from tfrs_kit.recipe._recipe import Recipe
from tfrs_kit.recipe._report import Blend, RecipeReport, Trial
from tfrs_kit.recipe._settings import Settings

__all__ = ["Blend", "Recipe", "RecipeReport", "Settings", "Trial"]
