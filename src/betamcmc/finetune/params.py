"""The ``finetune`` params section: semi-supervised classification and dialog CVAE settings.

::

    finetune:
      label: null                 # label factor to predict; null: the corpus's first one
      label_fractions: [0.01, 0.1, 1.0]   # share of the training labels used, each in (0, 1]
      schedules: [constant, monotonic, cyclical]   # keys of pretrain.schedules run downstream
      seeds: [0]                  # classifier seeds per pretrained VAE seed (subset + init)
      classifier: logreg          # logreg | mlp, on the frozen code
      features: mean              # mean: posterior mean mu; sample: one z ~ q(z|x) per sentence
      finetune_encoder: false     # also train the VAE encoder end to end with the classifier
      dialog:
        bow: [nobow, bow]         # without / with the bag-of-words loss (one DVC item each)
        ...

The dialog stage's beta follows ``pretrain.schedules.<schedule>`` (the same functions as the
pretraining, :mod:`betamcmc.vae.schedules`), over the CVAE's own training iterations.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, Field, model_validator

from betamcmc.core.chainparams import Chain, Prior, ProtocolRun, StepSize
from betamcmc.core.schema import Section, Seeds


def _label_fraction(value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise ValueError("must be in (0, 1]")
    return value


LabelFraction = Annotated[float, AfterValidator(_label_fraction)]
Bow = Literal["nobow", "bow"]  # without / with the bag-of-words loss
BOW: tuple[str, ...] = get_args(Bow)


class DialogParams(Section):
    """The conditional VAE for dialog responses (Zhao et al. 2017) and its evaluation."""

    bow: list[Bow] = Field(
        min_length=1,
        description="nobow: the CVAE's ELBO; bow: plus the bag-of-words loss (Zhao et al.); "
        "each setting is one `dialog` item",
    )
    init_encoder: Literal["pretrained", "random"] = Field(
        description="pretrained: the utterance encoder starts from the schedule's pretrained VAE "
        "encoder (vocabularies must match; sizes then come from the VAE); random: fresh weights"
    )
    emb_dim: int = Field(ge=1, description="word embedding size (init_encoder: random)")
    utt_hidden: int = Field(ge=1, description="utterance encoder LSTM size (init_encoder: random)")
    bidirectional: bool = Field(description="bidirectional utterance encoder (random init)")
    ctx_hidden: int = Field(ge=1, description="context encoder GRU size")
    latent_dim: int = Field(ge=1)
    dec_hidden: int = Field(ge=1, description="response decoder LSTM size")
    prior_hidden: int = Field(ge=1, description="hidden layer of the prior network p(z|c)")
    dropout: float = Field(ge=0.0, lt=1.0)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0.0)
    clip: float = Field(gt=0.0, description="max global gradient norm")
    samples: int = Field(ge=1, description="N responses sampled per test context (z ~ p(z|c))")
    max_decode_len: int | None = Field(ge=1, description="max generated tokens; null: data.max_len")
    bleu_order: int = Field(ge=1, le=4, description="BLEU-1..this order are reported")
    eval_contexts: int | None = Field(
        ge=1, description="score at most this many test contexts (null: all)"
    )
    seeds: Seeds = Field(
        description="one CVAE per seed (init, batch order, sampling); seed i starts from the "
        "pretrained VAE seed i (cycling); metrics: mean, std, 95 % CI over them",
    )


class VaeHeadParams(ProtocolRun, StepSize, Prior, Chain):
    """Bayesian classifier head on the frozen VAE codes (stage ``sgmcmc_vae_head@<schedule>``,
    ``betamcmc.finetune.vae_head``).

    Inputs are the codes of the labeled sentences (posterior means, or one sample z ~ q(z|x)
    each: ``features``), standardized with the train split's mean and std. The sampler kind, friction and temperature come from
    ``sgmcmc.sampler``; protocol, step size, prior and sample budget are the head's own. The
    point estimate it is compared with is the MAP of the same model and prior (full-batch Adam).
    ``protocol`` / ``workers``, ``step_size``, ``prior_std`` and ``burn_in`` / ``thinning`` /
    ``samples`` / ``batch_size`` come from the blocks (:mod:`betamcmc.core.chainparams`).
    """

    label: str = Field(
        min_length=1, description="label factor (checked against the corpus at run time)"
    )
    features: Literal["mean", "sample"] = Field(
        description="mean: posterior means mu; sample: one z ~ q(z|x) per sentence (the code "
        "the decoder receives; a collapsed code is then noise)"
    )
    hidden: int = Field(ge=0, description="0: softmax regression; > 0: MLP with this width")
    max_train: int | None = Field(ge=1, description="cap on labeled train sentences")
    max_test: int | None = Field(ge=1, description="cap on labeled test sentences")
    map_steps: int = Field(ge=1, description="full-batch Adam steps of the MAP baseline")
    map_lr: float = Field(gt=0.0)
    seeds: Seeds = Field(
        description="one independent chain (and MAP init; hidden 0: one convex MAP) per seed on the "
        "same codes; R-hat and "
        "ESS across the chains, BMA and MAP metrics: mean, std, 95 % CI over them",
    )


class FinetuneParams(Section):
    """Semi-supervised classification on the pretrained codes, and the dialog CVAE."""

    schedules: list[str] = Field(
        min_length=1,
        description="the pretrain.schedules entries the downstream stages (classify, dialog, "
        "sgmcmc_vae_head, report) run for; each must be a key of pretrain.schedules",
    )
    label: str | None = Field(description="label factor to predict; null: the first one")
    label_fractions: list[LabelFraction] = Field(min_length=1)
    seeds: Seeds = Field(
        description="classifier seeds per pretrained VAE seed: VAE seed i with classifier seed s "
        "draws its labeled subset and initialises its classifier from i + 1000 s; accuracy is "
        "the mean over them per VAE seed, the spread is between VAE seeds",
    )
    classifier: Literal["logreg", "mlp"]
    features: Literal["mean", "sample"] = Field(
        description="mean: posterior mean mu; sample: one z ~ q(z|x) per sentence"
    )
    finetune_encoder: bool = Field(
        description="train the encoder end to end with the classifier (in addition)"
    )
    logreg_c: float = Field(gt=0.0, description="inverse L2 strength of logistic regression")
    mlp_hidden: int = Field(ge=1)
    epochs: int = Field(ge=1, description="full-batch epochs of the MLP / end-to-end training")
    lr: float = Field(gt=0.0, description="Adam learning rate (MLP / end-to-end)")
    finetune_epochs: int = Field(ge=1, description="epochs of end-to-end encoder fine-tuning")
    finetune_lr: float = Field(gt=0.0, description="Adam learning rate, end-to-end")
    batch_size: int = Field(ge=1, description="minibatch size of end-to-end fine-tuning")
    max_train: int | None = Field(ge=1, description="cap on training sentences (null: all)")
    max_test: int | None = Field(ge=1, description="cap on test sentences (null: all)")
    dialog: DialogParams
    vae_head: VaeHeadParams

    @model_validator(mode="after")
    def _distinct(self) -> FinetuneParams:
        if len(set(self.schedules)) != len(self.schedules):
            raise ValueError(f"schedules must be distinct (got {self.schedules})")
        if len(set(self.label_fractions)) != len(self.label_fractions):
            raise ValueError(f"label_fractions must be distinct (got {self.label_fractions})")
        if len(set(self.dialog.bow)) != len(self.dialog.bow):
            raise ValueError(f"dialog.bow settings must be distinct (got {self.dialog.bow})")
        return self
