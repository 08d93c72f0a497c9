"""The metric-name reader of the deploy tests, on the PromQL shapes our queries use."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.deploy.promql import metric_names


@dataclass(frozen=True)
class Case:
    expr: str
    names: set[str]


CASES = [
    Case("up", {"up"}),
    Case('sum by (topic) (lag{kind="input", topic=~"a.b"})', {"lag"}),
    Case("histogram_quantile(0.9, sum by (le) (rate(x_bucket[$__rate_interval])))", {"x_bucket"}),
    Case("sum(rate(a_sum[5m])) / sum(rate(a_count[5m]))", {"a_sum", "a_count"}),
    Case("deriv(sum(lag)[10m:1m]) > 0 and lag > 1000", {"lag"}),
    Case('ready == 0 or up{job="gateway"} == 0', {"ready", "up"}),
    Case("sum without (instance) (a) unless on (job) group_left (x) b offset 5m", {"a", "b"}),
    Case('count({__name__="ignored"}) + 1e3 + Inf', set()),
    Case("a:recorded:rate5m * 2", {"a:recorded:rate5m"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.expr for c in CASES])
def test_metric_names(case: Case) -> None:
    assert metric_names(case.expr) == case.names
