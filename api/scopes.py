"""What a token's scope covers in the plant: its areas, posts and sensors.

A :class:`~api.auth.TokenScope` names workshops and posts; an area is in scope
when its workshop is one of the workshops or its post one of the posts, and a
post is in scope when it is one of the posts or belongs to one of the
workshops. :class:`ScopeView` answers those questions for one caller against
the plant config, so every route filters and checks the same way.

Ids repeat in a plant: a workshop id may be used by two sites, a post id by
two workshops, an area id by two sites (``model/plant.py`` makes only sensor
ids unique plant-wide). So every comparison is made on *qualified* ids,
``SITE/WORKSHOP`` and ``SITE/WORKSHOP/POST``. A scope may name a workshop or
post bare when the plant has it in one place only; :func:`check_scope` refuses
a bare name that is in several places (naming them) and accepts the qualified
form. A bare name that became ambiguous later (the plant file changed) covers
nothing, as does a name the plant no longer has: the view fails closed. The
same goes for a bare area or post an event or record carries without its site:
it is covered only when every place it could be is.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from alarms.hazards import Hazard
from api.auth import Principal, TokenScope
from model.plant import PlantConfig

__all__ = ["AreaPlace", "PlantPlaces", "ScopeView", "check_scope"]

Rules = Callable[[], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class AreaPlace:
    """Where an area sits, and the post that answers its alarms."""

    site: str
    workshop: str
    area: str
    post: str

    @property
    def workshop_id(self) -> str:
        return f"{self.site}/{self.workshop}"

    @property
    def post_id(self) -> str:
        return f"{self.site}/{self.workshop}/{self.post}"


@dataclass(frozen=True, slots=True)
class PlantPlaces:
    """Where each area, post and sensor sits: built once per app from the plant.

    ``workshops`` and ``posts`` map a bare id to its qualified ids (more than
    one: the id repeats); ``posts_of_workshop`` is keyed by qualified
    workshop and holds qualified posts.
    """

    areas: dict[str, tuple[AreaPlace, ...]]
    sensors: dict[str, AreaPlace]
    workshops: dict[str, tuple[str, ...]]
    posts: dict[str, tuple[str, ...]]
    posts_of_workshop: dict[str, frozenset[str]]

    @classmethod
    def of(cls, plant: PlantConfig) -> PlantPlaces:
        areas: dict[str, list[AreaPlace]] = {}
        sensors: dict[str, AreaPlace] = {}
        workshops: dict[str, list[str]] = {}
        posts: dict[str, list[str]] = {}
        posts_of: dict[str, frozenset[str]] = {}
        for site in plant.sites:
            for ws in site.workshops:
                ws_id = f"{site.id}/{ws.id}"
                workshops.setdefault(ws.id, []).append(ws_id)
                mine = [p.id for team in ws.teams for p in team.posts]
                for post in mine:
                    posts.setdefault(post, []).append(f"{ws_id}/{post}")
                posts_of[ws_id] = frozenset(f"{ws_id}/{p}" for p in mine)
                for area in ws.areas:
                    place = AreaPlace(site.id, ws.id, area.id, area.post)
                    areas.setdefault(area.id, []).append(place)
                    for sensor in area.sensors:
                        sensors[sensor.id] = place
        return cls(
            areas={a: tuple(p) for a, p in areas.items()},
            sensors=sensors,
            workshops={w: tuple(sorted(q)) for w, q in workshops.items()},
            posts={p: tuple(sorted(q)) for p, q in posts.items()},
            posts_of_workshop=posts_of,
        )

    @property
    def area_of_sensor(self) -> dict[str, str]:
        return {s: p.area for s, p in self.sensors.items()}

    def qualified(self, kind: str, name: str) -> tuple[str, ...]:
        """Every qualified id ``name`` (bare or qualified) stands for; () if none."""
        known = self.workshops if kind == "workshop" else self.posts
        if "/" in name:
            bare = name.rpartition("/")[2]
            return (name,) if name in known.get(bare, ()) else ()
        return known.get(name, ())

    def area_posts(self, area: str, site: str | None = None) -> frozenset[str]:
        """The qualified posts answering ``area`` (one per site that has the id)."""
        return frozenset(p.post_id for p in self.areas.get(area, ())
                         if site is None or p.site == site)

    def post_ids(self, post: str, site: str | None = None,
                 workshop: str | None = None) -> frozenset[str]:
        """The qualified ids ``post`` (bare or qualified) may stand for, narrowed to
        a site and workshop when they are known."""
        found = self.qualified("post", post)
        if "/" in post:
            return frozenset(found)
        out = set()
        for q in found:
            q_site, q_workshop, _ = q.split("/")
            if site in (None, q_site) and workshop in (None, q_workshop):
                out.add(q)
        return frozenset(out)

    def hazard_fields(self, sensor: str | None, area: str | None, post: str | None
                      ) -> list[tuple[str, str, frozenset[str]]]:
        """Each place a hazard names: (field, value, the qualified posts it may mean).

        A field is read in the light of the ones before it: the area a sensor
        names is looked for in the sensor's site, its post in the sensor's (or
        the area's) workshop. An unknown value means no post at all.
        """
        out: list[tuple[str, str, frozenset[str]]] = []
        at = self.sensors.get(sensor) if sensor else None
        if sensor:
            out.append(("sensor", sensor, frozenset({at.post_id}) if at else frozenset()))
        area_places = list(self.areas.get(area, ())) if area else []
        if area:
            # A context that leaves nothing (the fields disagree) is not used:
            # every place the name may mean must then be covered.
            area_places = [p for p in area_places
                           if at is None or p.site == at.site] or area_places
            out.append(("area", area, frozenset(p.post_id for p in area_places)))
        if post:
            candidates = self.post_ids(post)
            workshops = ({at.workshop_id} if at is not None
                         else {p.workshop_id for p in area_places})
            if workshops:
                candidates = frozenset(q for q in candidates if any(
                    q.startswith(w + "/") for w in workshops)) or candidates
            out.append(("post", post, candidates))
        return out

    def hazard_problems(self, sensor: str | None, area: str | None, post: str | None
                        ) -> list[str]:
        """What does not agree with the plant in a new hazard's places: an unknown
        sensor, area or post, or a sensor, area and post that are not one place."""
        problems: list[str] = []
        at = self.sensors.get(sensor) if sensor else None
        if sensor and at is None:
            problems.append(f"unknown sensor {sensor!r}; GET /api/v1/sensors lists them")
        if area and area not in self.areas:
            problems.append(f"unknown area {area!r}; GET /api/v1/sensors lists them")
        if post and not self.qualified("post", post):
            problems.append(f"unknown post {post!r}; GET /api/v1/sensors lists them")
        if problems:
            return problems
        if at is not None:
            if area and area != at.area:
                problems.append(f"sensor {sensor!r} is in area {at.area!r} "
                                f"({at.workshop_id}), not {area!r}: give {at.area!r} or "
                                "leave the area out")
            if post and post not in (at.post, at.post_id):
                problems.append(f"sensor {sensor!r} is answered by post {at.post!r} "
                                f"({at.post_id}), not {post!r}: give {at.post!r} or leave "
                                "the post out")
        elif area and post:
            answering = sorted({p.post for p in self.areas[area]})
            if not any(post in (p.post, p.post_id) for p in self.areas[area]):
                problems.append(f"area {area!r} is answered by post "
                                f"{' or '.join(repr(p) for p in answering)}, not {post!r}: "
                                "give that post or leave the post out")
        return problems


def _nearest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.4)
    return f"; did you mean {close[0]!r}?" if close else ""


_FORM = {"workshop": "SITE/WORKSHOP", "post": "SITE/WORKSHOP/POST"}


def check_scope(plant: PlantConfig, workshops: Iterable[str] = (),
                posts: Iterable[str] = ()) -> TokenScope:
    """A scope of these workshops and posts, each checked against the plant.

    A name is bare (``tank-farm``) or qualified (``s1/tank-farm``,
    ``s1/tank-farm/tf-board``). Raises ValueError (one line) naming every
    unknown name with the nearest valid one and the known names, and every
    bare name that is in more than one place with those places, so a typo
    never makes a token that sees nothing and a repeated id never makes one
    that sees another site's workshop.
    """
    places = PlantPlaces.of(plant)
    workshops, posts = list(workshops), list(posts)
    problems = []
    for kind, names, known in (("workshop", workshops, places.workshops),
                               ("post", posts, places.posts)):
        shown = [b if len(q) == 1 else ", ".join(q) for b, q in known.items()]
        every = [*known, *(q for qs in known.values() for q in qs)]
        for name in names:
            found = places.qualified(kind, name)
            if len(found) > 1:
                problems.append(
                    f"{kind} {name!r} is in more than one place ({', '.join(found)}): give "
                    f"the one meant as {_FORM[kind]}, e.g. {found[0]!r}")
            elif not found:
                form = f" (a qualified {kind} is {_FORM[kind]})" if "/" in name else ""
                problems.append(
                    f"no {kind} {name!r} in enterprise {plant.enterprise.id!r}{form}"
                    f"{_nearest(name, every)} (known {kind}s: {', '.join(shown)})")
    if problems:
        raise ValueError("; ".join(problems))
    return TokenScope.of(workshops, posts)


class ScopeView:
    """One caller's view of the plant: what its token's scope covers.

    ``principal`` None (an open read without a token) and a plant-wide token
    cover everything. ``rules`` gives the suppression rules now (the alarm
    manager's ``rules``), for events about a rule; without it a scoped caller
    gets no such event (fails closed).
    """

    def __init__(self, places: PlantPlaces, principal: Principal | None,
                 rules: Rules | None = None) -> None:
        self.places = places
        self.principal = principal
        self.rules = rules
        self.scope = principal.scope if principal is not None else TokenScope()
        self.everything = self.scope.plant_wide
        self.ambiguous: list[str] = []
        workshops: set[str] = set()
        posts: set[str] = set()
        for kind, names, into in (("workshop", self.scope.workshops, workshops),
                                  ("post", self.scope.posts, posts)):
            for name in sorted(names):
                found = places.qualified(kind, name)
                if len(found) == 1:
                    into.add(found[0])
                elif found:
                    self.ambiguous.append(name)  # which one was meant? none: fail closed
        self.workshops = frozenset(workshops)
        self.posts = frozenset(posts).union(
            *(places.posts_of_workshop.get(w, frozenset()) for w in workshops))

    def describe(self) -> str:
        who = f"token {self.principal.name!r}" if self.principal is not None else "this caller"
        text = f"{who} is limited to {self.scope.describe()}"
        if self.ambiguous:
            text += (f" ({', '.join(repr(n) for n in self.ambiguous)} is in more than one "
                     "place of the plant and covers nothing: make a new token naming it as "
                     "SITE/WORKSHOP or SITE/WORKSHOP/POST)")
        return text

    def _all_in(self, posts: frozenset[str]) -> bool:
        """Every place a (possibly ambiguous) name may mean is covered."""
        return bool(posts) and posts <= self.posts

    def covers_place(self, workshop: str | None, post: str | None,
                     site: str | None = None) -> bool:
        """An alarm point's (or event's) place: its site, workshop and post."""
        if self.everything:
            return True
        if workshop is None or post is None:
            return False
        return self._all_in(self.places.post_ids(post, site, workshop))

    def covers_area(self, area: str, site: str | None = None) -> bool:
        if self.everything:
            return True
        return self._all_in(self.places.area_posts(area, site))

    def covers_sensor(self, sensor: str) -> bool:
        if self.everything:
            return True
        place = self.places.sensors.get(sensor)
        return place is not None and place.post_id in self.posts

    def covers_post(self, post: str, site: str | None = None,
                    workshop: str | None = None) -> bool:
        return self.everything or self._all_in(self.places.post_ids(post, site, workshop))

    def covers_point(self, point: Any) -> bool:
        """An alarm point (:class:`~alarms.points.AlarmPoint`) or its dict."""
        if isinstance(point, dict):
            return self.covers_place(point.get("workshop"), point.get("post"),
                                     point.get("site"))
        return self.covers_place(point.workshop, point.post, point.site)

    def _hazard_fields(self, hazard: Hazard | dict[str, Any]
                       ) -> list[tuple[str, str, frozenset[str]]]:
        get = hazard.get if isinstance(hazard, dict) else (lambda k: getattr(hazard, k))
        return self.places.hazard_fields(get("sensor"), get("area"), get("post"))

    def covers_hazard(self, hazard: Hazard | dict[str, Any]) -> bool:
        """Whether a caller may act on a hazard: every sensor, area and post it
        names is in scope. One tied to none of them is plant-wide, for plant-wide
        tokens only."""
        if self.everything:
            return True
        fields = self._hazard_fields(hazard)
        return bool(fields) and all(self._all_in(posts) for _, _, posts in fields)

    def touches_hazard(self, hazard: Hazard | dict[str, Any]) -> bool:
        """Whether a caller should see a hazard: its sensor, area or post is in scope."""
        if self.everything:
            return True
        return any(self._all_in(posts) for _, _, posts in self._hazard_fields(hazard))

    def hazard_outside(self, hazard: Hazard | dict[str, Any]) -> list[str]:
        """The places a hazard names that are outside the scope (``post 'rx-board'``)."""
        return [f"{field} {value!r}" for field, value, posts in self._hazard_fields(hazard)
                if not self.everything and not self._all_in(posts)]

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

    def touches_rule_id(self, rule_id: str) -> bool:
        """:meth:`touches_rule` of the rule called ``rule_id``; an unknown one is not seen."""
        if self.everything:
            return True
        rule = next((r for r in self.rules() if r.get("id") == rule_id), None) \
            if self.rules is not None else None
        return rule is not None and self.touches_rule(rule)

    def covers_event(self, event: str, data: dict[str, Any]) -> bool:
        """Whether a live event (SSE) concerns this caller."""
        if self.everything:
            return True
        if event == "alarm":
            return self.covers_place(data.get("workshop"), data.get("post"), data.get("site"))
        if event == "risk":
            return bool(data.get("area")) and self.covers_area(str(data["area"]),
                                                               data.get("site"))
        if event == "hazard":
            return self.touches_hazard(data)
        if event == "flood":
            return bool(data.get("post")) and self.covers_post(
                str(data["post"]), data.get("site"), data.get("workshop"))
        if event == "system":
            # A suppression rule going on or off concerns those whose alarms it
            # acts on, as GET /suppressions shows it to them only.
            detail = data.get("detail")
            if isinstance(detail, dict) and detail.get("rule") is not None:
                return self.touches_rule_id(str(detail["rule"]))
            return True  # the alarm system's own state (down, back) concerns everyone
        return event == "overflow"
