"""The workers: the pure correlation rules and the faust app around them, beside :mod:`gateway`.

The rules are pure (:mod:`processors.correlation` with :mod:`processors.lifecycle`,
:mod:`processors.funnel` and :mod:`processors.outcome`, :mod:`processors.flags`,
:mod:`processors.publication`, :mod:`processors.sessions`, :mod:`processors.analytics`); the faust
app (:mod:`processors.app`, :mod:`processors.pipeline`) feeds them Kafka's inputs and writes their
results exactly once, through the runtime's corrections to faust (:mod:`processors.runtime`,
:mod:`processors.driver`, :mod:`processors.tables`, :mod:`processors.store`, ...). The reconciler with
Persona's REST API (:mod:`processors.reconcile`) and the dead-letter tools live here too.

May import: third-party libraries, :mod:`core` and :mod:`schemas`. Never :mod:`gateway` (the two meet
only through Kafka topics and the records of :mod:`schemas`), nor :mod:`persona_stream` or
:mod:`bench` (``lint-imports`` checks it; see docs/architecture.md).
"""
