"""``python -m vitrine.cli``."""

from vitrine.cli import main

main()
