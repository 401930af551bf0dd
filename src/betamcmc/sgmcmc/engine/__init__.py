"""The asynchronous master-worker SG-MCMC engine (Li et al., AAAI 2019) on torch.distributed.

It knows tasks (a model, a minibatch loss, test predictions), not where they come from, and
imports nothing of this project beyond ``betamcmc.core`` and ``betamcmc.core.parallel``: every stage
that samples runs all of it (dvc.yaml lists the folder). Modules, in the order a run uses them:

* ``sgld``, ``sghmc``: one sampler each (the decaying step size in ``sgld``); ``stepsize``: the
  cyclical step-size schedule (cSG-MCMC); ``flat``: parameters and gradients as single vectors;
* ``config``: ``EngineConfig`` (chain and communication settings) and ``RunSpec`` (one run);
* ``wire``: the message format; ``worker``: a worker, its exchanges and heartbeats; ``master``: the
  master loop, liveness and fault handling; ``receivers``: the master's receive threads;
  ``protocols/``: what workers and master exchange;
* ``launch``: local processes or a torchrun rank; ``result``: what a run reports;
  ``samples``: the samples file.
"""
