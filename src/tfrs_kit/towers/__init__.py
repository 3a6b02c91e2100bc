"""Towers: encoders from named features to one embedding, built in or custom."""

from tfrs_kit.towers._tower import Tower

__all__ = ["Tower"]
