"""``python -m betamcmc.cli``: the console script."""

from betamcmc.cli import console

console()
