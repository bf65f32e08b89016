"""What both daemons share at run time: TOML config loading, error types, logging, systemd notify,
the daemon life cycle and the metrics HTTP server."""
