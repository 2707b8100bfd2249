"""Effects in points computed one house at a time equal the broadcast computation, bit for bit (no sampling)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from model.results import summaries
from tests.report.fakes import fake_result


def test_effect_in_points_one_group_at_a_time_is_the_broadcast_arithmetic():
    post = fake_result().posterior
    trend = summaries.trend_logit(post)
    for name in ("house_effect", "question_effect", "jump"):
        effect = post[name]
        broadcast = 100 * (summaries._softmax(trend + effect) - summaries._softmax(trend)).mean(
            "time"
        )
        ours = summaries.effect_in_points(post, effect)
        assert ours.dims == broadcast.dims, name
        np.testing.assert_array_equal(ours.values, broadcast.values)  # equal, not close
        xr.testing.assert_identical(ours, broadcast)
