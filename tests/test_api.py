"""The public API is small, pinned and documented."""

import inspect
import re
from pathlib import Path

import tfrs_kit as tk

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = [
    "Cascade",
    "HistoryBuilder",
    "Index",
    "IndexBuilder",
    "NotFittedError",
    "Ranker",
    "Recipe",
    "Recommendations",
    "Report",
    "Schema",
    "Tower",
    "TwoTowerRetrieval",
    "Vocabularies",
    "Vocabulary",
    "VocabularyBuilder",
    "VocabularyCounts",
    "__version__",
    "baselines",
    "data",
    "datasets",
    "evaluate",
    "evaluation",
    "features",
    "load",
    "load_index",
    "recipe",
    "testing",
    "towers",
]


def test_all_is_pinned_and_sorted():
    assert tk.__all__ == EXPECTED
    assert tk.__all__ == sorted(tk.__all__)


def test_every_public_name_exists_and_is_documented():
    for name in tk.__all__:
        obj = getattr(tk, name)
        if name == "__version__":
            continue
        assert inspect.getdoc(obj), f"{name} has no docstring"


def test_package_is_typed():
    assert (ROOT / "src" / "tfrs_kit" / "py.typed").is_file()


def test_changelog_mentions_the_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    versions = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", changelog, flags=re.M)
    assert versions and versions[0] == tk.__version__
