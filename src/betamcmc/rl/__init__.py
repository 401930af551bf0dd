"""Asynchronous policy optimisation with SG-MCMC exploration, on the ``sgmcmc`` engine.

An actor-critic agent (``agent``) learns on classic-control environments (``envs``); worker
processes of the SG-MCMC engine collect rollouts and compute gradients (``task``), the master owns
the parameters; ``experiment`` runs one ``rl`` stage item over seeds and evaluates the master's
policies (``evaluate``); ``report`` writes the table and figure; ``play`` replays a saved policy.
"""
