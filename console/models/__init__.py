"""State of the console apart from its widgets: small models the screens observe."""
