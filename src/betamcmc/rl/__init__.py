"""Asynchronous policy optimisation with SG-MCMC exploration (issue 7), on the ``sgmcmc`` engine.

An actor-critic agent (``agent``) learns on classic-control environments (``envs``); worker
processes of the SG-MCMC engine collect rollouts and compute gradients (``task``), the master owns
the parameters; ``experiment`` runs one ``rl`` stage item over seeds and evaluates the master's
policies (``evaluate``); ``report`` writes the table and figure; ``play`` replays a saved policy.
"""

# Load the root params module first: it imports this package's params section, which in turn
# needs ``betamcmc.params.Section`` (importing ``betamcmc.rl.params`` first would be circular).
import betamcmc.params  # noqa: F401
