"""The `radpulse` command line (``main``) and the supervision of its processes (``up``/``demo``, embedded broker)."""
