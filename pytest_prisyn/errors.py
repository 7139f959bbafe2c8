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
    """A dataset is not recorded and the run may not call the network.

    The message ends with the command that records the dataset; `for_test`
    names the test in it, where the caller knows which test asked.
    """

    def __init__(self, message: str, *, data_dir: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data_dir = data_dir

    def for_test(self, test: str = "<the test>") -> str:
        """The message with the exact command that records the dataset."""
        command = (
            "GEMINI_API_KEY=<your key> pytest --prisyn-online "
            f"--prisyn-backend=gemini {test}"
        )
        if self.data_dir is not None:
            command += f" && prisyn cache export {self.data_dir}"
        return f"{self.message}\n  record it with: {command}"

    def __str__(self) -> str:
        return self.for_test()


class StoreError(PrisynError):
    """A cache entry is damaged or cannot be read or written."""
