"""Plants for tests: the shipped plant file, and small plants built in code so each
test states what it relies on.

The shipped plant, loaded once, is the session fixture ``plant`` (conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.plant import PlantConfig, parse_plant

PLANT_YAML = Path(__file__).resolve().parents[1] / "config" / "plant.yaml"


def small_plant_data() -> dict[str, Any]:
    return {
        "enterprise": {"id": "acme", "name": "Acme Chemicals"},
        "sites": [
            {
                "id": "s1",
                "workshops": [
                    {
                        "id": "tank-farm",
                        "teams": [{"id": "team-a", "posts": [{"id": "post-tf"}]}],
                        "areas": [
                            {
                                "id": "tf-a",
                                "post": "post-tf",
                                "risk": "orange",
                                "sensors": [
                                    {"id": "LEL-1", "kind": "combustible_lel",
                                     "range": [0, 100], "deadband": 2.0},
                                    {"id": "LEL-2", "kind": "combustible_lel",
                                     "range": [0, 100], "limits": {"h": 20, "hh": 40}},
                                    {"id": "H2S-1", "kind": "toxic_ppm", "gas": "H2S",
                                     "range": [0, 100]},
                                    {"id": "O2-1", "kind": "oxygen_pct", "range": [0, 25]},
                                    {"id": "PT-1", "kind": "pressure_kpa", "range": [0, 1000],
                                     "limits": {"ll": 50, "l": 100, "h": 800, "hh": 900},
                                     "on_delay_s": 0.005, "off_delay_s": 0.01},
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
    }


def small_plant() -> PlantConfig:
    return parse_plant(small_plant_data(), "tests/plants.py")
