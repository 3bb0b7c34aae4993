"""The Kong edge: the plugin server process, the PDK-facing handler and the schema Kong validates."""
