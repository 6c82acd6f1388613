"""The `pricer` command."""
