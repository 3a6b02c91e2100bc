"""``Recipe.save`` and ``tk.load``: one version of a fitted Recipe, no pickle.

A version folder (``DIR/versions/<n>/``, see ``_store``) holds::

    manifest.json        format version, library version, schema, settings, report,
                         the blend's weights, the Recipe's arguments (written last)
    vocabularies.json    the towers' vocabularies (Vocabularies.save)
    weights/             the two towers' weights (a TensorFlow checkpoint)
    slots.npz            the optimizer's state: its accumulators' row means (_slots),
                         where an update's fine-tuning starts (older versions: none)
    factors.npz          the blend's factorisation, unweighted (``users``, ``items``:
                         rows in the vocabularies' order), where an update's goes on
                         (none without one; older versions: none)
    blend/               the blend's factor tables, query and candidate side (.npy)
    queries.parquet      one row per user: their query features (latest history)
    candidates.parquet   one row per candidate item: its features
    seen.parquet         the user and item of each interaction of the training log
    index/               the serving SavedModel (Recipe.build_index(...).save): with a
                         kept ranker, the cascade (its retrieve_k recorded)
    ranker/              a kept ranker's config, weights and items' popularity

Loading rebuilds the towers from the settings and vocabularies by the code that
trained them (``_training.build_model``), then reads the weights.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._version import __version__
from tfrs_kit.data._schema import Schema
from tfrs_kit.features._vocabulary import Vocabularies
from tfrs_kit.recipe import _slots, _store
from tfrs_kit.recipe._fit_progress import release_unused_memory
from tfrs_kit.recipe._inputs import Columns
from tfrs_kit.recipe._report import RecipeReport
from tfrs_kit.recipe._rerank import read_cascade, serving_cascade, write_ranker
from tfrs_kit.recipe._settings import Settings
from tfrs_kit.recipe._towers import Towers, tower_factory
from tfrs_kit.recipe._training import Data, Saved, Trained, build_model

__all__ = ["FORMAT", "FORMAT_VERSION", "read", "save"]

FORMAT = "tfrs_kit.recipe"
FORMAT_VERSION = 1
_VOCABULARIES = "vocabularies.json"
_WEIGHTS = "weights/towers"
_SLOTS = "slots.npz"
_FACTORS = "factors.npz"
_TABLES = ("queries", "candidates", "seen")


def save(recipe: Any, path: str | os.PathLike[str], *, k_max: int = 100,
         wait: float = 60.0) -> int:
    """Writes ``recipe`` as the next version of ``path`` and points ``latest`` at it."""
    trained = recipe._fitted()
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise invalid_argument("path", "name a folder", str(root), hint="It is a file.",
                               error=FileExistsError)
    if root.is_dir() and _store.foreign_files(root):
        raise invalid_argument("path", "be new, empty, or a folder Recipe.save wrote",
                               str(root), hint="Refusing to write into a folder of other "
                               "files.", error=FileExistsError)
    with _store.locked(root, wait=wait), _store.commit(root) as (number, folder):
        _write_version(recipe, trained, folder, k_max=k_max)
    return number


def _write_version(recipe: Any, trained: Trained, folder: Path, *, k_max: int) -> None:
    model = trained.model
    base, blend = _parts(model)
    vocabularies = getattr(model, "vocabularies_", None)
    if vocabularies is None:
        raise invalid_argument("recipe", "hold a model the Recipe built", type(model).__name__)
    vocabularies.save(folder / _VOCABULARIES)
    tf.train.Checkpoint(query=base[0], candidate=base[1]).write(str(folder / _WEIGHTS))
    if trained.slots is not None:
        _slots.save(trained.slots, folder / _SLOTS)
    factors = getattr(model, "factor_tables_", None)
    if factors is not None:
        np.savez(folder / _FACTORS, users=factors[0], items=factors[1])
    if blend is not None:
        (folder / "blend").mkdir()
        # Copied out of the variables one at a time, not kept through the export.
        np.save(folder / "blend" / "query_factors.npy", blend["query"].numpy())
        np.save(folder / "blend" / "candidate_factors.npy", blend["candidate"].numpy())
    queries, candidates, seen = recipe.queries(), recipe.candidates(), recipe._seen()
    for name, table in zip(_TABLES, (queries, candidates, seen), strict=True):
        table = table.reset_index(drop=True)
        table.attrs = {}
        table.to_parquet(folder / f"{name}.parquet", index=False)
        del table
        release_unused_memory()  # Arrow's pool keeps the writer's pages, the index won't
    recipe.build_index(k_max=min(k_max, len(candidates))).save(folder / "index")
    manifest = _manifest(recipe, trained, blend)
    cascade = serving_cascade(recipe)
    manifest["cascade"] = None if cascade is None else write_ranker(cascade, folder)
    text = json.dumps(manifest, indent=2, default=_json_default)
    with open(folder / _store.MANIFEST, "w", encoding="utf-8") as file:  # last
        file.write(text)


def _parts(model: Any) -> tuple[tuple[Any, Any], dict[str, Any] | None]:
    """The base towers of ``model`` and, for a blend, its joined factor tables (the
    variables) and scales."""
    from tfrs_kit.recipe._blend import JoinedTower

    query, candidate = model.query_tower, model.candidate_tower
    if not isinstance(query, JoinedTower):
        return (query, candidate), None
    return (query.tower, candidate.tower), {
        "query": query.factors, "candidate": candidate.factors,
        "scales": {"query": query.scale, "query_factors": query.factor_scale,
                   "candidate": candidate.scale, "candidate_factors": candidate.factor_scale}}


def _manifest(recipe: Any, trained: Trained, blend: dict[str, Any] | None) -> dict[str, Any]:
    report: RecipeReport = recipe.report
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "tfrs_kit_version": __version__,
        "tensorflow_version": tf.__version__, "created": _store.now(),
        "schema": recipe.schema_.to_dict(), "history_column": recipe.columns.history,
        "settings": trained.settings.to_dict(), "epochs": trained.epochs,
        "report": report.to_dict(), "metrics": _metrics(report),
        "blend": None if blend is None else {
            "weights": None if report.blend is None else report.blend.to_dict(),
            "scales": blend["scales"]},
        "towers": {"query": _tower_spec("query_tower", recipe.query_tower),
                   "candidate": _tower_spec("candidate_tower", recipe.candidate_tower)},
        "arguments": {
            "item_features": list(recipe.item_features),
            "user_features": list(recipe.user_features), "time_budget": recipe.time_budget,
            "max_trials": recipe.max_trials, "metric": recipe.metric,
            "validation_fraction": recipe.validation_fraction,
            "histories": list(recipe.histories), "max_history": recipe.max_history,
            "max_epochs": recipe.max_epochs, "blend": recipe.blend, "seed": recipe.seed,
            "rerank": recipe.rerank,
            **{name: getattr(recipe, name) for name in ("in_memory_rows", "search_rows")
               if hasattr(recipe, name)}},
    }


def _metrics(report: RecipeReport) -> dict[str, float]:
    """The final model's validation score (the blend's, if any) by metric name; after an
    update, the guard's scores of this version and of the one before, on the same
    events (``"guard ndcg@10"``, ``"guard ndcg@10 before"``): a fit's and an update's
    are measured on different events and never under the same name."""
    update = report.update
    if update is not None:
        if update.get("updated_score") is None:
            return {}
        name = f"guard {update['metric']}"
        return {name: float(update["updated_score"]),
                f"{name} before": float(update["serving_score"])}
    score = report.validation_score
    return {} if score is None else {report.metric: float(score)}


def _tower_spec(argument: str, tower: Any) -> str:
    """A tower argument as text: a registered name, or ``module:qualname`` to import."""
    if isinstance(tower, str):
        return tower
    module, name = getattr(tower, "__module__", None), getattr(tower, "__qualname__", None)
    if module is None or name is None or "<" in name:
        raise invalid_argument(
            argument, "be importable (a registered name, or a module-level class or "
            "function) for the Recipe to be saved", tower, error=TypeError,
            hint="Register it with tfrs_kit.towers.register_tower, or define it at module "
            "level.")
    return f"{module}:{name}"


def _tower_from_spec(spec: str) -> Any:
    if ":" not in spec:
        return spec  # a registered name: tower_factory resolves it
    module, _, name = spec.partition(":")
    try:
        value: Any = importlib.import_module(module)
        for part in name.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as error:
        raise invalid_argument("towers", "name an importable tower", spec,
                               hint=f"The saved Recipe was built with it: {error}.",
                               error=ImportError) from None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read(path: str | os.PathLike[str], *, version: int | None = None,
         argument: str = "path") -> dict[str, Any]:
    """What ``tk.load`` needs to rebuild the Recipe saved in ``path`` (version ``latest``
    names, or ``version``): its ``arguments`` (``Recipe(**arguments)``), and the fitted
    state's ``columns``, ``trained``, ``report`` and ``saved`` tables."""
    root = Path(path)
    numbers = _store.complete_versions(root)
    if not numbers:
        raise _store.not_saved(argument, root)
    if version is None:
        version = _store.read_latest(root) or numbers[-1]
    if version not in numbers:
        raise invalid_argument("version", "be a complete saved version", version,
                               hint=f"Saved versions: {numbers}.")
    folder = root / _store.VERSIONS / str(version)
    manifest = _store.manifest_of(root, version)
    _check_format(manifest, folder)
    towers = {side: _tower_from_spec(spec) for side, spec in manifest["towers"].items()}
    schema = Schema.from_dict(manifest["schema"])
    arguments = {**manifest["arguments"], "schema": schema, "query_tower": towers["query"],
                 "candidate_tower": towers["candidate"], "verbose": False}
    columns = Columns(schema, manifest["history_column"])
    saved = Saved(*(pd.read_parquet(folder / f"{name}.parquet") for name in _TABLES))
    settings = Settings.from_dict(manifest["settings"])
    model = _model(folder, manifest, columns, settings, saved, Towers(
        tower_factory("query_tower", towers["query"]),
        tower_factory("candidate_tower", towers["candidate"])),
        manifest["arguments"]["max_history"])
    trained = Trained(model, settings, manifest["epochs"], {}, 0.0,
                      epochs_run=manifest["epochs"], slots=_slots.load(folder / _SLOTS))
    return {"arguments": arguments, "columns": columns, "trained": trained,
            "report": RecipeReport.from_dict(manifest["report"]), "saved": saved,
            "cascade": read_cascade(folder, manifest.get("cascade"), model)}


def _check_format(manifest: dict[str, Any], folder: Path) -> None:
    if manifest.get("format") != FORMAT:
        raise invalid_argument("path", f"hold a {FORMAT} manifest", manifest.get("format"),
                               hint=f"{folder / _store.MANIFEST} was written by another tool.")
    found = manifest.get("format_version")
    if not isinstance(found, int) or found > FORMAT_VERSION:
        raise invalid_argument(
            "path", f"hold a saved Recipe of format version {FORMAT_VERSION} or older "
            f"(tfrs_kit {__version__} reads up to {FORMAT_VERSION})", found,
            hint=f"It was written by tfrs_kit {manifest.get('tfrs_kit_version')}, format "
            f"version {found}: upgrade tfrs_kit to load it.")


def _model(folder: Path, manifest: dict[str, Any], columns: Columns, settings: Settings,
           saved: Saved, towers: Towers, max_history: int) -> Any:
    """The trained model, rebuilt from its settings and vocabularies, weights read."""
    empty = pd.DataFrame()
    data = Data(log=empty, items=empty, users=empty, columns=columns,
                max_history=max_history, towers=towers)
    vocabularies = Vocabularies.load(folder / _VOCABULARIES)
    model = build_model(data, settings, vocabularies=vocabularies)
    # Built before the weights are read, so that every variable must match.
    model.query_tower.embed(saved.queries.head(2), verbose=False)
    model.candidate_tower.embed(saved.candidates.head(2), verbose=False)
    checkpoint = tf.train.Checkpoint(query=model.query_tower, candidate=model.candidate_tower)
    checkpoint.read(str(folder / _WEIGHTS)).assert_existing_objects_matched().expect_partial()
    blend = manifest.get("blend")
    if blend is not None:
        model = _joined(model, vocabularies, columns, folder, blend["scales"])
    model.factor_tables_ = _store.read_arrays(
        folder / _FACTORS, lambda arrays: (arrays["users"], arrays["items"]),
        lost="its factorisation's tables, and its next update factorises anew")
    return model


def _joined(model: Any, vocabularies: Vocabularies, columns: Columns, folder: Path,
            scales: dict[str, float]) -> Any:
    from tfrs_kit.recipe._blend import JoinedTower
    from tfrs_kit.retrieval import TwoTowerRetrieval

    joined = TwoTowerRetrieval(
        JoinedTower(model.query_tower, vocabularies[columns.user_id],
                    np.load(folder / "blend" / "query_factors.npy"), scale=scales["query"],
                    factor_scale=scales["query_factors"], name="query_blend"),
        JoinedTower(model.candidate_tower, vocabularies[columns.item_id],
                    np.load(folder / "blend" / "candidate_factors.npy"),
                    scale=scales["candidate"], factor_scale=scales["candidate_factors"],
                    name="candidate_blend"),
        item_id=model.candidate_id)
    joined.vocabularies_ = vocabularies
    return joined
