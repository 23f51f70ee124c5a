"""``python -m conveyor`` runs the CLI."""

from conveyor.cli.app import main

main()
