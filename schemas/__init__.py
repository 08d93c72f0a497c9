"""The bottom layer: the pydantic models of everything that crosses a wire, and the one codec.

- :mod:`schemas.callbacks`, :mod:`schemas.webhooks` -- what Persona's browser SDK and its webhooks send;
- :mod:`schemas.frames` -- the websocket frames of the gateway's protocol;
- :mod:`schemas.records`, :mod:`schemas.internal` -- the records of the public and the internal topics;
- :mod:`schemas.views` -- the materialized view of one inquiry;
- :mod:`schemas.codec`, :mod:`schemas.errors` -- bytes to models and back; the one error root;
- :mod:`schemas.codes`, :mod:`schemas.code_docs` -- every stable code, and where each appears;
- :mod:`schemas.export` -- the JSON Schema of every public model, written to ``docs/schemas/``.

Everything else is built on these, so they decide nothing about settings, Kafka or processes.

May import: third-party libraries only. Nothing of the project (``lint-imports`` checks it; see
docs/architecture.md).
"""
