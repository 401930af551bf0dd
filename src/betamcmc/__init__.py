"""betamcmc: cyclical beta annealing for text VAEs and communication-efficient asynchronous SG-MCMC.

The package is the library behind the DVC stages in ``stages/``; see ``docs/architecture.md``.
"""

__version__ = "0.1.0"
