"""The verdict: measures, the tail rules, a run against its references, the ladder, `pricer compare`."""
