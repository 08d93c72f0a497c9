"""The dashboard page and the charting library vendored beside it (no CDN: the page works offline)."""

from __future__ import annotations

import hashlib
import re

from gateway.app import DASHBOARD, VENDOR, VENDOR_DIR

UPLOT_VERSION = "1.6.32"


def test_the_vendored_library_is_the_pinned_version_unchanged() -> None:
    assert (
        (VENDOR_DIR / "uPlot.iife.min.js")
        .read_text()
        .startswith(f"/*! https://github.com/leeoniya/uPlot (v{UPLOT_VERSION}) */")
    )
    assert (VENDOR_DIR / "LICENSE").read_text().startswith("The MIT License (MIT)")
    source = (VENDOR_DIR / "SOURCE.md").read_text()
    assert f"uplot@{UPLOT_VERSION}" in source
    for name in VENDOR:
        digest = hashlib.sha256((VENDOR_DIR / name).read_bytes()).hexdigest()
        assert f"| {name} | {digest} |" in source, name


def test_the_page_loads_only_what_the_gateway_serves() -> None:
    page = DASHBOARD.read_text()
    loaded = re.findall(r'<(?:script|link)[^>]* (?:src|href)="([^"]+)"', page)
    assert sorted(loaded) == sorted([*(f"/dashboard/vendor/{name}" for name in VENDOR), "data:,"])  # and no favicon
