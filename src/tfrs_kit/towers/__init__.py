"""Towers: encoders from named features to one embedding, built in or custom.

Towers are found by name: the built-ins ``"default"`` (:class:`~tfrs_kit.Tower`)
and ``"cross"`` (:class:`CrossTower`), those registered with
:func:`register_tower`, and those other distributions declare in the entry point
group ``"tfrs_kit.towers"``. ``tk.Recipe(query_tower=NAME, candidate_tower=NAME)``
and ``tfrs-kit train --query-tower NAME`` train with them; ``tfrs-kit towers``
lists them.

>>> from tfrs_kit import towers
>>> towers.get_tower("default") is towers.Tower
True
"""

from tfrs_kit.towers._cross import CrossTower
from tfrs_kit.towers._registry import (
    available_towers,
    get_tower,
    register_tower,
)
from tfrs_kit.towers._sequence import SequenceEncoder
from tfrs_kit.towers._tower import Tower

__all__ = [
    "CrossTower",
    "SequenceEncoder",
    "Tower",
    "available_towers",
    "get_tower",
    "register_tower",
]
