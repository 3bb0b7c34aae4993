"""Suite-wide fixtures: the real OpenID provider, the real browser, the echo upstream, redis."""

pytest_plugins = ["tests.support.idp_fixtures", "tests.support.browser", "tests.support.server_fixtures"]
