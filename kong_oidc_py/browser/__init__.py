"""Browser login: authorization code + PKCE, the token endpoint, and encrypted sessions."""
