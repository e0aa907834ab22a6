"""The UI's shell: every view is served from the package with its assets (no CDN), the top bar
links them, and `/` is the start page while JSON clients still get the API index there."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Page

from ferry.testing import FerryProcess
from ferry.ui.routes import VIEWS


def test_every_view_and_asset_is_served_from_the_package(ferry: FerryProcess) -> None:
    with httpx.Client(base_url=ferry.api, timeout=15) as http:
        for view in VIEWS:
            path = view.path.replace("{trace_id}", "0" * 32).replace("{name}", "ferry")
            r = http.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
            assets = re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', r.text)
            assert f"/ui/static/views/{view.name}.js" in assets
            for asset in assets:
                a = http.get(asset)
                assert a.status_code == 200 and a.content, asset
            assert "http://" not in r.text and "https://" not in r.text  # works offline: nothing from elsewhere


def test_top_bar_links_every_view(ferry: FerryProcess, page: Page) -> None:
    page.goto(ferry.api + "/")
    assert page.title() == "Logs · ferry"
    for view in VIEWS:
        if view.nav:
            page.click(f"header.top nav a[data-view={view.name}]")
            page.wait_for_url(re.compile(re.escape(view.path) + r"(\?.*)?$"))
            assert page.locator(f"header.top nav a[data-view={view.name}]").get_attribute("aria-current") == "page"
