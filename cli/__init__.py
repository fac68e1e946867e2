"""The `cdserve` command line: one entry point, subcommands owned by the packages that implement them."""
