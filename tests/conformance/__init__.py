"""PyMongo's own tests run against the MongoDB wire double (``__main__``, ``selection.toml``)."""
