"""Runs over time: saved benchmark runs, the accuracy history, what counts as a change, timing."""
