"""A small log of two taste groups, shared by the Recipe's tests."""

import numpy as np
import pandas as pd


def two_group_log(num_users=40, num_items=30, per_user=8, seed=0):
    """Two taste groups: even users like even items, odd users odd items."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        own = np.arange(user % 2, num_items, 2)
        for t, item in enumerate(rng.choice(own, size=per_user, replace=False)):
            rows.append((f"u{user}", f"i{item}", t, float(item % 3)))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "price"])
