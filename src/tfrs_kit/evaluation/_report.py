"""An immutable comparison of models: metrics as a dict, a text table, Markdown or a plot."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from tfrs_kit._errors import invalid_argument, unknown_name
from tfrs_kit._validation import check_int

__all__ = ["Report"]

_AT_K = re.compile(r"^(?P<metric>.+)@(?P<k>\d+)$")


class Report:
    """Metric values per model, read-only.

    Rows of the text and Markdown tables are metrics, columns are models. Build one with
    :func:`~tfrs_kit.evaluation.evaluate`, or directly to add columns such as fit time.

    Args:
        results: ``{model name: {metric name: value}}``; metric names such as
            ``"recall@10"`` are plotted against K.
        metadata: Free-form facts about the evaluation (cut-offs, number of users).

    Example:
        >>> report = Report({"pop": {"recall@10": 0.1}, "ease": {"recall@10": 0.18}})
        >>> print(report)
        metric     pop     ease
        recall@10  0.1000  0.1800
        >>> report["ease"]["recall@10"]
        0.18
    """

    __slots__ = ("_metadata", "_metrics", "_results")
    _results: Mapping[str, Mapping[str, float]]
    _metrics: tuple[str, ...]
    _metadata: Mapping[str, Any]

    def __init__(
        self,
        results: Mapping[str, Mapping[str, float]],
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(results, Mapping) or not results or not all(
            isinstance(row, Mapping) for row in results.values()
        ):
            raise invalid_argument(
                "results", "be a non-empty mapping of model name to {metric: value}", results,
                error=TypeError,
            )
        frozen = {str(name): MappingProxyType({str(m): float(v) for m, v in row.items()})
                  for name, row in results.items()}
        metrics: list[str] = []
        for row in frozen.values():
            metrics.extend(m for m in row if m not in metrics)
        object.__setattr__(self, "_results", MappingProxyType(frozen))
        object.__setattr__(self, "_metrics", tuple(metrics))
        object.__setattr__(self, "_metadata", MappingProxyType(dict(metadata or {})))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Report is immutable; cannot set {name!r}.")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Report is immutable; cannot delete {name!r}.")

    @property
    def models(self) -> tuple[str, ...]:
        """The model names, in order."""
        return tuple(self._results)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names, in order of first appearance."""
        return self._metrics

    @property
    def metadata(self) -> Mapping[str, Any]:
        """Facts about the evaluation (read-only)."""
        return self._metadata

    def __getitem__(self, model: str) -> Mapping[str, float]:
        if model not in self._results:
            raise unknown_name("model", model, self.models, what="model")
        return self._results[model]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Report) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple((m, tuple(sorted(r.items()))) for m, r in self._results.items()))

    def to_dict(self) -> dict[str, dict[str, float]]:
        """A plain nested copy: ``{model: {metric: value}}``.

        Example:
            >>> Report({"pop": {"ndcg@10": 0.5}}).to_dict()
            {'pop': {'ndcg@10': 0.5}}
        """
        return {name: dict(row) for name, row in self._results.items()}

    def _cells(self, precision: int) -> list[list[str]]:
        precision = check_int("precision", precision, minimum=0)
        rows = [["metric", *self.models]]
        for metric in self._metrics:
            rows.append([metric] + [
                _format(self._results[name].get(metric), precision) for name in self.models
            ])
        return rows

    def to_text(self, *, precision: int = 4) -> str:
        """An aligned plain-text table (metrics as rows, models as columns).

        Example:
            >>> print(Report({"a": {"mrr@5": 1 / 3}}).to_text(precision=2))
            metric  a
            mrr@5   0.33
        """
        rows = self._cells(precision)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        )

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"Report(models={list(self.models)}, metrics={list(self._metrics)})"

    def to_markdown(self, *, precision: int = 4) -> str:
        """A GitHub-flavoured Markdown table.

        Example:
            >>> print(Report({"a": {"mrr@5": 0.5}}).to_markdown())
            | metric | a |
            |---|---:|
            | mrr@5 | 0.5000 |
        """
        rows = self._cells(precision)
        lines = ["| " + " | ".join(rows[0]) + " |",
                 "|---|" + "---:|" * (len(rows[0]) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike[str], *, metrics: list[str] | None = None) -> str:
        """Plots each ``metric@K`` against K, one panel per metric, and saves the figure.

        Needs matplotlib (``pip install "tfrs-kit[plot]"``).

        Args:
            path: The file to write; the format follows its suffix (``.png``, ``.svg``...).
            metrics: Base metric names to plot (``["recall", "ndcg"]``); default all that
                have a ``@K`` suffix.

        Returns:
            The path written, as a string.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ImportError(
                'Report.plot needs matplotlib: pip install "tfrs-kit[plot]"'
            ) from error
        curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
        for metric in self._metrics:
            match = _AT_K.match(metric)
            if not match:
                continue
            base, k = match["metric"], int(match["k"])
            for name in self.models:
                value = self._results[name].get(metric)
                if value is not None:
                    curves.setdefault(base, {}).setdefault(name, []).append((k, value))
        wanted = list(curves) if metrics is None else list(metrics)
        for base in wanted:
            if base not in curves:
                    raise unknown_name("metrics", base, list(curves), what="metric with @K values")
        if not wanted:
            raise invalid_argument("metrics", "name at least one metric@K", metrics)
        columns = min(3, len(wanted))
        rows = math.ceil(len(wanted) / columns)
        figure = Figure(figsize=(4 * columns, 3 * rows), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for axis, base in zip(axes, wanted, strict=False):
            for name, points in curves[base].items():
                ks, values = zip(*sorted(points), strict=True)
                axis.plot(ks, values, marker="o", label=name)
            axis.set_title(base)
            axis.set_xlabel("K")
            axis.legend(fontsize="small")
        for axis in axes[len(wanted):]:
            axis.set_visible(False)
        figure.savefig(os.fspath(path))
        return os.fspath(path)


def _format(value: float | None, precision: int) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    return f"{value:.{precision}f}"
