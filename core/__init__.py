"""The foundation above :mod:`schemas`: what the gateway, the processors and the shell share.

- :mod:`core.settings` -- the one settings object, read from the environment once per entry point;
- :mod:`core.topics` -- the topic plan (names, partitions, configs) and topic creation;
- :mod:`core.tokens` -- access tokens and their scopes, minted by operators and checked by the
  gateway and the workers alike.

May import: third-party libraries and :mod:`schemas`. Nothing else of the project (``lint-imports``
checks it; see docs/architecture.md).
"""
