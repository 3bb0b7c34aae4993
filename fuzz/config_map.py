"""Target: `config.parse_config` on arbitrary maps (what Kong, or a hand-edited kong.yml,
hands the plugin server).

Input: a JSON text; a non-object is parsed as it is (Kong could send anything). Start-up
builds what a Gateway builds from an accepted config (policies, verifier options, session
settings), so an accepted config must also build.

Contract: a PluginConfig, or ConfigError naming a field; the message never holds the value of
a secret option (hmac_secret, client_secret, session_secret, session_redis_password); an
accepted config builds its policy set, verifier options and session settings without error;
bounded time.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from fuzz import contract
from kong_oidc_py.config import OPTIONS, PluginConfig, parse_config
from kong_oidc_py.errors import ConfigError
from kong_oidc_py.policy import PolicySet
from kong_oidc_py.verification.verify import VerifyOptions

NAME = "config_map"
SECRETS = tuple(o.name for o in OPTIONS if getattr(o, "secret", False))


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _build(cfg: PluginConfig) -> None:
    PolicySet.from_config(cfg)
    VerifyOptions.from_config(cfg)
    VerifyOptions.for_id_token(cfg)
    if "authorization_code" in cfg.auth_methods or "session" in cfg.auth_methods:
        from kong_oidc_py.browser.session.store import SessionSettings

        SessionSettings.from_config(cfg)


def one_input(data: bytes) -> None:
    raw = _load(contract.text(data))
    if raw is None:
        return
    secrets = [raw[name] for name in SECRETS if isinstance(raw, dict) and isinstance(raw.get(name), str)]
    try:
        cfg = contract.bounded(lambda: parse_config(raw))
    except ConfigError as err:
        if not isinstance(err.field, str) or not err.field:
            raise contract.Violation("ConfigError without a field") from None
        message = str(err)
        for secret in secrets:
            if len(secret) >= 4 and secret in message:
                raise contract.Violation("ConfigError quotes a secret value") from None
        contract.check_message("config error", message[:contract.MAX_MESSAGE], [])
        return
    try:
        contract.bounded(lambda: _build(cfg))
    except ConfigError as err:
        raise contract.Violation(f"an accepted config fails to build: {err.field}") from None


def seeds() -> Iterator[bytes]:
    return contract.seeds(NAME)
