"""The pytest plugin: its hooks, one eval session, each width's outcome, xdist workers, the summary."""
