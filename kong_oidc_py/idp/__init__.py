"""Talking to the identity provider: bounded HTTP, discovery, key sets, one Provider per issuer."""
