"""Command-line options that each kernel subsystem adds to `run` and `create`."""
