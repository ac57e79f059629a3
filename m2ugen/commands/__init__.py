"""Subcommands of the ``m2ugen`` command line, one module each (see :mod:`m2ugen.cli`)."""
