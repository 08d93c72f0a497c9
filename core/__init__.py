"""The foundation: what every other package may import, and which imports none of them.

- :mod:`core.settings` -- the one settings object, read from the environment once per entry point;
- :mod:`core.topics` -- the topic plan (names, partitions, configs) and topic creation;
- :mod:`core.tokens` -- access tokens and their scopes, minted by operators and checked by the
  gateway and the workers alike.

May import: third-party libraries and :mod:`schemas`. Nothing else of the project.
"""
