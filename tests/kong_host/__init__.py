"""Kong host emulator: plays Kong 3.9's side of the external plugin-server protocol.

Spec: /work/shared/kong-plugin-server.md. Entry points: `Emulator` (tests), `python -m tests.kong_host` (CLI).
"""

from .declarative import DeclarativeError, gen_id
from .emulator import Emulator
from .plugin_server import PluginServerError, PluginServerSpec

__all__ = ["Emulator", "PluginServerSpec", "DeclarativeError", "PluginServerError", "gen_id"]
