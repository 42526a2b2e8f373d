"""The saved tour JSON the report tests draw: a real `zcopy tour --size 64M --json` run on the project's machine
(ext4, kernel 6.18, 2 CPUs), so every path, route and counter in it is one the tour really produced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

TOUR_JSON = Path(__file__).parent / "data" / "tour.json"


@pytest.fixture
def saved_tour() -> dict[str, Any]:
    return json.loads(TOUR_JSON.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
