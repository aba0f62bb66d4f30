"""Stage 7: the deployable bundle, its typed manifest, and the report."""

# The line `edgetune serve` prints once it listens; `loadtest` reads the URL from it.
READY_LINE = "edgetune serve: ready on"

# Texts to send or time when the user gives none (loadtest's traffic, serve's batch timing).
SAMPLE_TEXTS = [
    "a gripping, beautifully shot film",
    "the plot goes nowhere and the acting is wooden",
    "An honest, funny and moving story about growing up in a small town.",
    "I wanted to like it, but two hours of this felt like four.",
    "The service was quick and the staff were friendly.",
    (
        "Shares fell sharply after the company missed its earnings forecast for the third quarter "
        "in a row, and analysts expect more cuts before the end of the year."
    ),
    "fine",
    "Not bad at all; the second half is better than the first, and the ending works.",
]
