"""Suite-wide fixtures: the real OpenID provider, the real browser, the echo upstream."""

pytest_plugins = ["tests.support.idp_fixtures", "tests.support.browser", "tests.support.upstream_fixtures"]
