"""Text VAE with beta schedules (Fu et al., NAACL 2019): schedules, model, training, evaluation.

Modules: :mod:`schedules` (beta as a pure function of the iteration), :mod:`params` (the
``pretrain`` params section), :mod:`model` (the LSTM VAE, one file), :mod:`train` (the loop,
checkpoints, resume), :mod:`evaluate` (ELBO, IS-NLL, PPL, MI, active units), :mod:`figures`.
"""
