"""The search's finished trials, kept in the work directory so that a stopped ``fit`` resumes.

Each finished trial is one JSON file, ``<work_dir>/trials/<key>/<number>.json``, written
under a temporary name and renamed into place (a process killed midway leaves no
half-written trial). ``key`` hashes everything a trial's outcome depends on: the rows
searched and the validation slice, the search's settings (seed, metric, max_trials,
the base settings, the histories and features searched, the time budget) and this
format's version. A later ``fit`` with the same key replays those trials into the Optuna
study (``study.add_trial``) instead of training them again.

TPE draws from a generator seeded per trial number (:class:`PerTrialSeeds`), so a study
resumed after ``n`` replayed trials proposes the same next settings as one that ran
them: what a trial proposes depends on the seed, its number and the trials before it,
not on how many draws an earlier process made.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PerTrialSeeds", "TrialStore", "trial_key"]

_FORMAT = 1  # the version of the trial files; a change makes earlier ones unused


def trial_key(tables: Mapping[str, pd.DataFrame], settings: Mapping[str, Any]) -> str:
    """A short hash of ``tables`` (their values, columns and order) and ``settings``."""
    digest = hashlib.sha256(f"tfrs_kit trials {_FORMAT}".encode())
    for name in sorted(tables):
        table = tables[name]
        digest.update(f"{name}:{list(map(str, table.columns))}:{len(table)}".encode())
        if len(table.columns):
            hashed = pd.util.hash_pandas_object(table.astype(
                {c: str for c in table.columns if table[c].dtype == object}), index=False)
            digest.update(np.ascontiguousarray(hashed.to_numpy()).tobytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


class TrialStore:
    """The finished trials of one search (one key) in ``folder``."""

    def __init__(self, work_dir: str | os.PathLike[str], key: str) -> None:
        self.folder = os.path.join(os.fspath(work_dir), "trials", key)

    def load(self) -> list[dict[str, Any]]:
        """The trials written, in order: ``0.json``, ``1.json``, ... up to the first
        missing or unreadable one (the ones after it are not used)."""
        records: list[dict[str, Any]] = []
        while True:
            path = os.path.join(self.folder, f"{len(records)}.json")
            try:
                with open(path, encoding="utf-8") as f:
                    record = json.load(f)
            except (OSError, ValueError):
                return records
            if record.get("number") != len(records):
                return records
            records.append(record)

    def write(self, record: Mapping[str, Any]) -> None:
        """Writes the trial ``record["number"]`` atomically (temporary file, then rename)."""
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, f"{record['number']}.json")
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)


def frozen_record(optuna: Any, frozen: Any) -> dict[str, Any]:
    """What Optuna needs to replay the finished trial ``frozen``."""
    return {"number": frozen.number, "state": frozen.state.name, "value": frozen.value,
            "params": frozen.params,
            "distributions": {name: optuna.distributions.distribution_to_json(d)
                              for name, d in frozen.distributions.items()},
            "intermediate": {str(step): value
                             for step, value in frozen.intermediate_values.items()}}


def replay(optuna: Any, study: Any, record: Mapping[str, Any]) -> None:
    """Adds the trial :func:`frozen_record` wrote to ``study``, as it finished."""
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState[record["state"]], value=record["value"],
        params=record["params"],
        distributions={name: optuna.distributions.json_to_distribution(d)
                       for name, d in record["distributions"].items()},
        intermediate_values={int(step): value
                             for step, value in record["intermediate"].items()}))


class PerTrialSeeds:
    """A TPE sampler whose draws for trial ``n`` come from a generator seeded by
    ``(seed, n)``: the same proposals whether the trials before were run or replayed."""

    def __new__(cls, optuna: Any, seed: int, **options: Any) -> Any:
        base = optuna.samplers.BaseSampler

        class _Sampler(base):  # type: ignore[misc,valid-type]
            def __init__(self) -> None:
                self._samplers: dict[int, Any] = {}

            def _for(self, trial: Any) -> Any:
                number = trial.number
                if number not in self._samplers:
                    self._samplers = {number: optuna.samplers.TPESampler(
                        seed=(seed * 100_003 + number) % 2**31, **options)}
                return self._samplers[number]

            def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
                return self._for(trial).infer_relative_search_space(study, trial)

            def sample_relative(self, study: Any, trial: Any, space: Any) -> Any:
                return self._for(trial).sample_relative(study, trial, space)

            def sample_independent(self, study: Any, trial: Any, name: str,
                                   distribution: Any) -> Any:
                return self._for(trial).sample_independent(study, trial, name, distribution)

            def before_trial(self, study: Any, trial: Any) -> None:
                self._for(trial).before_trial(study, trial)

            def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
                self._for(trial).after_trial(study, trial, state, values)

        return _Sampler()
