"""The benchmarks (``persona-stream bench``): the top layer, outside the product.

One module per scenario (ingest, processing, fan-out, end to end, recovery, faust's own floor), what
they share in :mod:`bench.harness`, and :mod:`bench.runner`, which runs them and writes their tables
(docs/performance.md).

May import: every other package of the project (it drives the real gateway and workers, on the
shell's local Kafka). Nothing imports it (``lint-imports`` checks it; see docs/architecture.md).
"""
