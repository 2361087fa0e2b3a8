"""The earlyexp harness: the ``earlyexp`` CLI, benchmarks, metrics and reports."""
