"""Generation: one cycle (``cycle``), its prompt, the provider calls over the official
SDKs (``providers``) and the built-in ``mock``, and parsing of the answers."""
