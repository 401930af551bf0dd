"""Downstream tasks on the pretrained text VAEs, one per beta schedule (Fu et al. 2019, Sec. 5).

Modules: :mod:`params` (the ``finetune`` params section), :mod:`classify` (semi-supervised
classification from frozen or fine-tuned VAE codes, with random-encoder and bag-of-words
baselines), :mod:`cvae` (the dialog conditional VAE of Zhao et al. 2017, one file),
:mod:`dialog` (its training loop and evaluation), :mod:`dialog_metrics` (BLEU precision/recall
over sampled responses, distinct-n, dialog-act agreement), :mod:`vae_head` (a Bayesian classifier
head on the codes, sampled by the SG-MCMC engine, against its MAP point estimate) and
:mod:`report` (tables and figure).
"""


def limit_threads(threads: int) -> None:
    """Cap torch's and the BLAS libraries' (sklearn/scipy) CPU threads; 0 keeps the defaults."""
    if threads > 0:
        # lazy: this package's __init__ runs for every params check (betamcmc.finetune.params)
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        threadpool_limits(limits=threads)
