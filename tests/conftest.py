"""Suite-wide fixtures: the real OpenID provider, the real browser, redis."""

pytest_plugins = ["tests.support.idp_fixtures", "tests.support.browser"]
