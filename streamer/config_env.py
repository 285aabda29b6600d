"""Reading :class:`~streamer.config.Settings` from the environment, once, at start-up.

``STREAMER_<FIELD>`` variables (upper case) are read by pydantic-settings, explicit values (CLI flags) go
on top, and an invalid or dangerous value is refused with a :class:`ConfigError` that names the variable
(and never echoes a secret). ``Settings(...)`` itself reads nothing: tests build it directly.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from streamer.config import PREFIX, Settings
from streamer.errors import ConfigError


class _FromEnvironment(Settings):
    """Settings from ``STREAMER_*`` variables, then explicit values on top."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


def load_settings(**overrides: Any) -> Settings:
    """Read ``STREAMER_*`` variables and explicit overrides (e.g. CLI flags; None = not given) into Settings.

    Raises :class:`ConfigError` naming the variable when a value is invalid or dangerous.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        loaded = _FromEnvironment(**given)
    except ValidationError as e:
        raise ConfigError(_explain(e)) from e
    return Settings(**{name: getattr(loaded, name) for name in Settings.model_fields})


_SECRET = frozenset({"api_keys", "admin_key", "jwt_secret", "redis_url"})  # never echoed back


def _explain(e: ValidationError) -> str:
    problems = []
    for error in e.errors():
        loc = [str(p) for p in error.get("loc", ())]
        if not loc:
            problems.append(error["msg"])
            continue
        given = "" if loc[0] in _SECRET else f" (got {error.get('input')!r})"
        problems.append(f"{PREFIX}{loc[0].upper()}: {error['msg']}{given}")
    return "invalid settings: " + "; ".join(problems)
