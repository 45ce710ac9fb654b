"""What a token's scope covers in the plant: its areas, posts and sensors.

A :class:`~api.auth.TokenScope` names workshops and posts; an area is in scope
when its workshop is one of the workshops or its post one of the posts, and a
post is in scope when it is one of the posts or belongs to one of the
workshops. :class:`ScopeView` answers those questions for one caller against
the plant config, so every route filters and checks the same way.

A token whose scope names a workshop or post the plant no longer has (the
plant file changed since the token was made) covers nothing there: it fails
closed. :func:`check_scope` refuses such names when a token is made, naming
the nearest valid one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from alarms.hazards import Hazard
from api.auth import Principal, TokenScope
from model.plant import PlantConfig

__all__ = ["PlantPlaces", "ScopeView", "check_scope"]


@dataclass(frozen=True, slots=True)
class PlantPlaces:
    """Where each area, post and sensor sits: built once per app from the plant."""

    workshop_of_area: dict[str, frozenset[str]]
    post_of_area: dict[str, frozenset[str]]
    area_of_sensor: dict[str, str]
    posts_of_workshop: dict[str, frozenset[str]]
    workshops: tuple[str, ...]
    posts: tuple[str, ...]

    @classmethod
    def of(cls, plant: PlantConfig) -> PlantPlaces:
        # Area ids are unique within a site only: an id used by two sites maps
        # to both its workshops and posts.
        ws_of: dict[str, set[str]] = {}
        post_of: dict[str, set[str]] = {}
        sensors: dict[str, str] = {}
        posts_of: dict[str, set[str]] = {}
        for site in plant.sites:
            for ws in site.workshops:
                posts_of.setdefault(ws.id, set()).update(
                    p.id for team in ws.teams for p in team.posts)
                for area in ws.areas:
                    ws_of.setdefault(area.id, set()).add(ws.id)
                    post_of.setdefault(area.id, set()).add(area.post)
                    for sensor in area.sensors:
                        sensors[sensor.id] = area.id
        return cls(
            workshop_of_area={a: frozenset(w) for a, w in ws_of.items()},
            post_of_area={a: frozenset(p) for a, p in post_of.items()},
            area_of_sensor=sensors,
            posts_of_workshop={w: frozenset(p) for w, p in posts_of.items()},
            workshops=tuple(dict.fromkeys(ws.id for s in plant.sites for ws in s.workshops)),
            posts=tuple(dict.fromkeys(p for ps in posts_of.values() for p in sorted(ps))),
        )


def _nearest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.4)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_scope(plant: PlantConfig, workshops: Iterable[str] = (),
                posts: Iterable[str] = ()) -> TokenScope:
    """A scope of these workshops and posts, each checked against the plant.

    Raises ValueError naming every unknown name, the nearest valid one and
    the known names, so a typo never makes a token that sees nothing.
    """
    places = PlantPlaces.of(plant)
    problems = []
    for kind, names, known in (("workshop", workshops, places.workshops),
                               ("post", posts, places.posts)):
        for name in names:
            if name not in known:
                problems.append(
                    f"no {kind} {name!r} in enterprise {plant.enterprise.id!r}"
                    f"{_nearest(name, known)} (known {kind}s: {', '.join(known)})")
    if problems:
        raise ValueError("; ".join(problems))
    return TokenScope.of(workshops, posts)


class ScopeView:
    """One caller's view of the plant: what its token's scope covers.

    ``principal`` None (an open read without a token) and a plant-wide token
    cover everything.
    """

    def __init__(self, places: PlantPlaces, principal: Principal | None) -> None:
        self.places = places
        self.principal = principal
        self.scope = principal.scope if principal is not None else TokenScope()
        self.everything = self.scope.plant_wide
        self.posts: frozenset[str] = self.scope.posts.union(
            *(places.posts_of_workshop.get(w, frozenset()) for w in self.scope.workshops))

    def describe(self) -> str:
        who = f"token {self.principal.name!r}" if self.principal is not None else "this caller"
        return f"{who} is limited to {self.scope.describe()}"

    def covers_place(self, workshop: str | None, post: str | None) -> bool:
        """An alarm point's (or event's) workshop and post."""
        if self.everything:
            return True
        return (workshop is not None and workshop in self.scope.workshops) or (
            post is not None and post in self.scope.posts)

    def covers_area(self, area: str) -> bool:
        if self.everything:
            return True
        return bool(self.places.workshop_of_area.get(area, frozenset()) & self.scope.workshops
                    or self.places.post_of_area.get(area, frozenset()) & self.scope.posts)

    def covers_sensor(self, sensor: str) -> bool:
        if self.everything:
            return True
        area = self.places.area_of_sensor.get(sensor)
        return area is not None and self.covers_area(area)

    def covers_post(self, post: str) -> bool:
        return self.everything or post in self.posts

    def covers_point(self, point: Any) -> bool:
        """An alarm point (:class:`~alarms.points.AlarmPoint`) or its dict."""
        if isinstance(point, dict):
            return self.covers_place(point.get("workshop"), point.get("post"))
        return self.covers_place(point.workshop, point.post)

    def covers_hazard(self, hazard: Hazard | dict[str, Any]) -> bool:
        """A hazard is in scope by its sensor, area or post; one tied to none of
        them is plant-wide and seen by plant-wide tokens only."""
        if self.everything:
            return True
        get = hazard.get if isinstance(hazard, dict) else (lambda k: getattr(hazard, k))
        sensor, area, post = get("sensor"), get("area"), get("post")
        return bool((sensor and self.covers_sensor(sensor)) or (area and self.covers_area(area))
                    or (post and self.covers_post(post)))

    def covers_rule(self, rule: dict[str, Any]) -> bool:
        """A suppression rule is wholly in scope when every area and sensor it
        names is; one that names none applies plant-wide."""
        if self.everything:
            return True
        areas, sensors = rule.get("areas") or [], rule.get("sensors") or []
        if not areas and not sensors:
            return False
        return all(self.covers_area(a) for a in areas) and all(
            self.covers_sensor(s) for s in sensors)

    def touches_rule(self, rule: dict[str, Any]) -> bool:
        """Whether a caller should see a rule: it acts on some of their alarms."""
        if self.everything:
            return True
        areas, sensors = rule.get("areas") or [], rule.get("sensors") or []
        if not areas and not sensors:
            return True
        return any(self.covers_area(a) for a in areas) or any(
            self.covers_sensor(s) for s in sensors)

    def covers_event(self, event: str, data: dict[str, Any]) -> bool:
        """Whether a live event (SSE) concerns this caller."""
        if self.everything:
            return True
        if event == "alarm":
            return self.covers_place(data.get("workshop"), data.get("post"))
        if event == "risk":
            return bool(data.get("area")) and self.covers_area(str(data["area"]))
        if event == "hazard":
            return self.covers_hazard(data)
        if event == "flood":
            return bool(data.get("post")) and self.covers_post(str(data["post"]))
        # The alarm system's own state (it is down, it is back) concerns everyone.
        return event in ("system", "overflow")
