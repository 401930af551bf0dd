"""Downstream tasks on the pretrained text VAEs, one per beta schedule (Fu et al. 2019, Sec. 5).

Modules: :mod:`params` (the ``finetune`` params section), :mod:`classify` (semi-supervised
classification from frozen or fine-tuned VAE codes, with random-encoder and bag-of-words
baselines), :mod:`cvae` (the dialog conditional VAE of Zhao et al. 2017, one file),
:mod:`dialog_train` (its training loop), :mod:`dialog` (its evaluation and the stage),
:mod:`dialog_metrics` (BLEU precision/recall over sampled responses, distinct-n, dialog-act
agreement), :mod:`vae_head` (a Bayesian classifier head on the codes, sampled by the SG-MCMC
engine, against its MAP point estimate) and :mod:`report` (tables and figure).
"""
