"""Models and names that cross a process boundary: the public API's, refusals, workflow calls."""
