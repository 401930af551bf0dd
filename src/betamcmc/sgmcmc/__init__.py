"""Asynchronous master-worker SG-MCMC (Li et al., AAAI 2019) on torch.distributed.

A sampler library: it knows tasks (a model, a minibatch loss, test predictions), not where they
come from. Modules, in the order a run uses them:

* ``sgld``, ``sghmc``: one sampler each; ``flat``: parameters and gradients as single vectors;
* ``config``: ``EngineConfig`` (chain and communication settings) and ``RunSpec`` (one run);
* ``wire``: the message format; ``worker``: a worker, its exchanges and heartbeats; ``master``: the
  master loop, liveness and fault handling; ``protocols/``: what workers and master exchange;
* ``launch``: local processes or a torchrun rank; ``result``: what a run reports;
* ``sampling``: the rules every sampling stage shares (signals, partial runs, output directory);
* ``tasks``, ``samples``, ``evaluate``: what is sampled, the samples file, BMA and diagnostics;
* ``mixture``, ``mixture_task``: the 25-Gaussian target (numpy metrics; the engine task);
* ``experiment``, ``baseline``, ``consistency``, ``coverage`` (+ ``coverage_report``), ``report``: the stages' work.
"""
