"""Models that cross a process boundary: what the public API takes and answers."""
