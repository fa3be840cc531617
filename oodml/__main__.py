"""``python -m oodml``: the command line (the CLI package is imported only here)."""

from oodml_cli import main

main()
