"""``python -m suitcase`` is the ``suitcase`` command."""

from suitcase.cli import main

main()
