"""The exceptions pytest-prisyn raises, one per kind of failure."""

from __future__ import annotations


class PrisynError(Exception):
    """Base class of every error pytest-prisyn raises on purpose."""


class RequestError(PrisynError, ValueError):
    """A dataset request is malformed: bad marker argument, size or profile."""


class ProfileError(RequestError):
    """A profile is unknown or its definition is invalid."""


class SpecError(RequestError):
    """A behaviour spec is degenerate or inconsistent and cannot be repaired."""


class ConfigError(PrisynError):
    """A setting (option, ini key or environment variable) has a bad value."""


class GenerationError(PrisynError):
    """A backend could not produce a valid dataset."""


class OfflineMissError(PrisynError):
    """A dataset is not recorded and the run may not call the network."""


class StoreError(PrisynError):
    """A cache entry is damaged or cannot be read or written."""
