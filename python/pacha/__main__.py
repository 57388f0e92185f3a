"""``python -m pacha`` runs the command line."""

from pacha.cli import main

main()
