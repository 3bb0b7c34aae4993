"""kong-oidc-py: an OpenID Connect plugin for Kong, on Kong's Python PDK."""

__version__ = "0.1.0"
PLUGIN_NAME = "oidc"
