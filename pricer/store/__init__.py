"""What made a run and where it is kept: fingerprints, machines, hardware classes, baselines, git refs."""
