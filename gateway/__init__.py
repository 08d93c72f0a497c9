"""The network edge: the gateway process, beside :mod:`processors` in the same layer.

Websocket ingest of the browser's callbacks (:mod:`gateway.client_ws`, its rules in
:mod:`gateway.ingest`), the webhook receiver (:mod:`gateway.webhook_receiver`, :mod:`gateway.signatures`),
subscriptions and analytics fan-out (:mod:`gateway.subscribe_ws`, :mod:`gateway.subscriptions`,
:mod:`gateway.statuses`), the inquiry query and the dashboard, all in one process built by
:mod:`gateway.app`. It writes what comes in to Kafka and reads the workers' output topics back.

May import: third-party libraries, :mod:`core` and :mod:`schemas`. Never :mod:`processors` (the two
meet only through Kafka topics and the records of :mod:`schemas`), nor :mod:`persona_stream` or
:mod:`bench` (``lint-imports`` checks it; see docs/architecture.md).
"""
