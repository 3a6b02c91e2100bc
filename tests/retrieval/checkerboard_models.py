"""Id-only two-tower models on the checkerboard log and their known answer (recall@1 = 1.0)."""

import numpy as np

import tfrs_kit as tk


def id_model(log, **kwargs):
    """A two-tower model with 8-d user-id and item-id towers, vocabularies from ``log``."""
    vocabs = tk.VocabularyBuilder().fit(log, features=["user_id", "item_id"])
    return tk.TwoTowerRetrieval(
        tk.Tower(vocabs, features=["user_id"], output_dim=8),
        tk.Tower(vocabs, features=["item_id"], output_dim=8), **kwargs)


def recall_at_1(model, log):
    """The share of users whose top item is of their own group (``conftest.checkerboard``)."""
    recommender = model.as_recommender(log, user_id="user_id", item_id="item_id")
    users = np.unique(log["user_id"])
    top = recommender.item_ids[np.argmax(recommender.score(users), axis=1)]
    own_group = [int(u[1:]) % 2 == int(i[1:]) // 10 for u, i in zip(users, top, strict=True)]
    return float(np.mean(own_group))
