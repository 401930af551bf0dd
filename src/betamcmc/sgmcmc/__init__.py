"""Asynchronous SG-MCMC (Li et al., AAAI 2019): the engine and the studies run on it.

A sampler library: it knows tasks (a model, a minibatch loss, test predictions), not where they
come from. ``engine/`` samples (samplers, master, workers, protocols, launch); the modules here
use it:

* ``sampling``: the rules every sampling stage shares (signals, partial runs, output directory);
* ``tasks``, ``evaluate``: what is sampled (digits, logistic regression), BMA and diagnostics;
* ``mixture``, ``mixture_task``: the 25-Gaussian target (numpy metrics; the engine task);
* ``experiment``, ``baseline``, ``consistency``, ``coverage`` (+ ``coverage_report``), ``report``: the stages' work.
"""
