"""Command-line subcommands (see facestyle.cli)."""
