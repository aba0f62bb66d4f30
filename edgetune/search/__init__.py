"""Stage 6: build and measure candidates, search pruning configurations, choose within the
budget."""
