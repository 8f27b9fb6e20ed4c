"""Grafana dashboards and alert rules as code.

``panels.py`` holds every SQL query by name (the tests run each one on chDB after ``macros.py`` expands it as
Grafana and the ClickHouse plugin would); one module per dashboard lays the panels out (``overview``,
``utilization``, ``dose``, ``benchmark``, ``pipeline``) with ``spec.py``'s pieces, which are Grafana's own typed
builders (``grafana-foundation-sdk``); ``alerts.py`` makes the alerting provisioning with the SDK's alerting
builders; ``build.py`` writes the checked-in files and ``push.py`` sends them to a live Grafana.
The dashboards know the ClickHouse schema only through their SQL and import no other radpulse package; the
one exception is ``cli.py``, which hosts ``radpulse clickhouse ddl`` and imports ``sinks.cluster_ddl`` when it runs.
"""
