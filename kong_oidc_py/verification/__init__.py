"""Token verification: where the token is, whether it is valid, and the cache of verified tokens."""
