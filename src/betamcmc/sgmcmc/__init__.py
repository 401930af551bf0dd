"""Asynchronous master-worker SG-MCMC (Li et al., AAAI 2019) on torch.distributed.

Samplers (``sgld``, ``sghmc``), communication protocols (``protocols/``), the process engine
(``engine``), tasks (``tasks``), the samples file (``samples``) and evaluation (``evaluate``).
"""

# Load the root params module first: it imports this package's params section, which in turn
# needs ``betamcmc.params.Section`` (importing ``betamcmc.sgmcmc.params`` first would be circular).
import betamcmc.params  # noqa: F401
