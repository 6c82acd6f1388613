# Repo-only choices; the plugin itself is registered by the package's entry point.
pytest_plugins = ["pytester"]
