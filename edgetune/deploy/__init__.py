"""Stage 7: the deployable bundle, its typed manifest, and the report."""

# The line `edgetune serve` prints once it listens; `loadtest` reads the URL from it.
READY_LINE = "edgetune serve: ready on"
