"""Screenshots of the UI views for docs/ui.md, taken by the UI tests from real data.

They are written into docs/ui/ only when FERRY_UI_SCREENSHOTS=1 (so a test run leaves the checkout
clean); otherwise into a temporary folder, so the code path still runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ui"


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    folder = DOCS if os.environ.get("FERRY_UI_SCREENSHOTS") == "1" else Path(tempfile.gettempdir()) / "ferry-ui-shots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
