"""Settings of the sensors: ``sensors:`` (the sensor layouts, by name)."""

from __future__ import annotations

import dataclasses

from pipelines.settings import Named, check


@dataclasses.dataclass(frozen=True)
class SensorLayoutConfig:
    """One sensor layout of ``sensors.layouts``: ``fraction`` of the grid points (at least
    one), drawn once from ``seed``, each reading every field of ``fields`` (empty: all)
    every ``every`` stored steps, with Gaussian noise of ``noise`` times the field's standard
    deviation over the trajectory (``pipelines.data.observations``)."""

    fraction: float
    fields: tuple[str, ...]
    every: int
    noise: float
    seed: int

    def validate(self, key: str) -> None:
        check(0 < self.fraction <= 1, f"{key}.fraction", f"must be a fraction in (0, 1], got {self.fraction}")
        check(self.every >= 1, f"{key}.every", f"must be >= 1, got {self.every}")
        check(self.noise > 0, f"{key}.noise", f"must be > 0, got {self.noise}")


@dataclasses.dataclass(frozen=True)
class SensorsConfig(Named):
    """``sensors:`` section: the sensor layouts, by name. The twin experiment observes one
    (``assimilate.layout``); an observation encoder is trained for each."""

    SECTION, NOUN, LOOKUP_NOUN = "sensors", "layout", "sensor layout"

    layouts: dict[str, SensorLayoutConfig]

    def layout(self, name: str, key: str) -> SensorLayoutConfig:
        """The layout ``name``; a :class:`ConfigError` naming ``key`` and the valid names otherwise."""
        return self.entry(name, key)
