"""The ``clearcut`` command line: ``main`` builds the parser; each module registers its subcommands."""
