"""Demo profiles: generators of extracts with a known truth, one industry shape each.

``demo`` is the default generator (:mod:`flows.demo`: a subscription business whose
exports match the extract contract). ``utility`` is an electricity and water supplier
whose exports need the column mapping, its own domain and a binary goal
(:mod:`flows.demo_profiles.utility`). Every profile has the same signature and returns
a :class:`flows.demo.GenerationSummary`, so the CLI only looks the name up here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flows.demo import GenerationSummary
from flows.errors import CxloopError


@dataclass(frozen=True)
class Profile:
    """A named generator and one line saying what it is for."""

    name: str
    description: str
    module: str  # imported on use: a profile's import cost is paid only when it runs

    def generate(self, out: Path, **kwargs: object) -> GenerationSummary:
        import importlib

        fn: Callable[..., GenerationSummary] = importlib.import_module(self.module).generate
        return fn(out, **kwargs)


PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile("demo", "subscription business; exports match the contract (default)",
            "flows.demo"),
    Profile("utility", "electricity and water supplier; own headers, domain, yes/no goal "
            "(writes _config/cxloop.yml)", "flows.demo_profiles.utility"),
]}


def profile(name: str) -> Profile:
    """The profile called ``name``, or an error listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise CxloopError(f"--profile {name!r} is not a demo profile; known: "
                          f"{', '.join(PROFILES)}") from None
