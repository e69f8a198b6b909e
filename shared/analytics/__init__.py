"""Traffic analytics: the pure core of zts's detections, blast radius, recommendations and
what-if simulation.

Nothing here performs I/O or imports an SDK or DuckDB (design.md, "Layers"): the adapters read
flow logs, run the ``.kql`` files and hand rows to these functions, which turn them into
:class:`shared.domain.findings.Finding` objects, rule recommendations and simulation reports.
"""
