"""A Bayesian classifier head on the frozen codes of a pretrained text VAE.

The semi-supervised setting of the ``classify`` stage (Kingma et al. 2014's M1), with the
classifier sampled instead of fitted: every labeled sentence is encoded once by the frozen VAE
encoder to its posterior mean mu (:func:`betamcmc.vae.codes.encode_sentences`), the codes
are standardized with the train split's mean and std, and a softmax regression (``hidden: 0``) or
one-hidden-layer MLP over them is

* **sampled** by the SG-MCMC engine (:mod:`betamcmc.sgmcmc`, any protocol, the samplers of
  ``sgmcmc.sampler``) as a :class:`CodesTask`: the minibatch NLL is scaled to the number of
  labeled train sentences and the N(0, ``prior_std``^2) prior is added by the engine; the test
  split is scored by the Bayesian model average of the samples (:mod:`betamcmc.sgmcmc.evaluate`:
  accuracy, mean test log-likelihood with its median and worst point, ECE);
* **fitted** as the point estimate it is compared with: the MAP of the same model and prior
  (full-batch Adam on ``mean NLL + |theta|^2 / (2 prior_std^2 N)``), scored the same way. The
  accuracy of scikit-learn's logistic regression (the ``classify`` stage's classifier) on the same
  codes is reported beside it as a cross-check.

Outputs of item ``<schedule>`` (:func:`run_head`, paths from dvc.yaml): the model directory (the
samples file, ``run.json``) and the metrics file (written last). Settings
in ``finetune.vae_head``; the engine's (sampler kind, friction, temperature, tau, overlap,
threads, worker timeout) come from ``sgmcmc``. With ``device: auto`` and CUDA present the
workers' gradients and the MAP fit run on the GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from betamcmc import tracking
from betamcmc.core import pipeline, stats
from betamcmc.core.errors import DivergenceError, InputError
from betamcmc.core.io import limit_threads, write_json
from betamcmc.core.pipeline import StageItem
from betamcmc.core.runner import resolve_device, seed_everything
from betamcmc.core.stopping import signals_deferred
from betamcmc.data.prepared import PreparedCorpus, load_prepared
from betamcmc.finetune.classify import labeled_split
from betamcmc.finetune.params import VaeHeadParams
from betamcmc.sgmcmc.engine.config import EngineConfig, RunSpec, SamplerConfig
from betamcmc.sgmcmc.engine.launch import start_forkserver
from betamcmc.sgmcmc.engine.samples import read_samples
from betamcmc.sgmcmc.evaluate import (
    chain_functionals,
    diagnose,
    evaluate_log_probs,
    predictive_metrics,
    sample_log_probs,
)
from betamcmc.sgmcmc.sampling import finalize_dir, fresh_partial, is_worker_rank, sample
from betamcmc.sgmcmc.tasks import MLP, Task
from betamcmc.tracking.progress import Progress
from betamcmc.vae.codes import encode_sentences, fit_predict_logreg
from betamcmc.vae.model import load_vae

if TYPE_CHECKING:
    from betamcmc.params import Params

PREDICTIVE = ("accuracy", "log_likelihood", "log_likelihood_median", "log_likelihood_worst", "ece")


# --------------------------------------------------------------------------- data
def check_label(corpus: PreparedCorpus, label: str) -> None:
    """An :class:`InputError` (exit 2, naming the corpus folder) when the corpus has no label
    factor ``label``."""
    names = corpus.label_names
    if label not in names:
        have = ", ".join(names) if names else "none"
        raise InputError(
            f"finetune.vae_head.label '{label}' is not a label of corpus "
            f"'{corpus.meta.get('corpus', '?')}' (it has: {have})",
            corpus.path,
        )


@dataclass
class HeadData:
    """Standardized codes and labels of the labeled train / test sentences."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int


def encode_codes(vae: Any, corpus: PreparedCorpus, p: VaeHeadParams) -> HeadData:
    """Codes of the labeled sentences (``p.features``: posterior means or one sample each),
    standardized with the train mean and std."""
    check_label(corpus, p.label)
    train = labeled_split(corpus, p.label, p.max_train, "train")
    test = labeled_split(corpus, p.label, p.max_test, "test")
    x_tr = encode_sentences(vae, train.ids, p.features, 0)
    x_te = encode_sentences(vae, test.ids, p.features, 1)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-8
    return HeadData(
        x_train=((x_tr - mean) / std).astype(np.float32),
        y_train=train.y,
        x_test=((x_te - mean) / std).astype(np.float32),
        y_test=test.y,
        n_classes=len(corpus.label_names[p.label]),
    )


# --------------------------------------------------------------------------- the task
class CodesTask(Task):
    """Softmax regression (``hidden`` 0) or an MLP over fixed feature vectors."""

    name = "vae_head"

    def __init__(self, data: HeadData, batch_size: int, hidden: int):
        super().__init__(
            torch.from_numpy(data.x_train),
            torch.from_numpy(data.y_train),
            torch.from_numpy(data.x_test),
            torch.from_numpy(data.y_test),
            batch_size,
            data.n_classes,
        )
        self.dim = data.x_train.shape[1]
        self.hidden = hidden

    def build_model(self) -> nn.Module:
        if self.hidden == 0:
            return nn.Linear(self.dim, self.n_classes)
        return MLP(self.dim, self.hidden, self.n_classes)


@dataclass
class CodesTaskFactory:
    """Picklable task factory (``RunSpec.task_factory``): worker processes rebuild the task."""

    data: HeadData
    batch_size: int
    hidden: int

    def __call__(self) -> CodesTask:
        return CodesTask(self.data, self.batch_size, self.hidden)


def head_name(hidden: int) -> str:
    return "softmax regression" if hidden == 0 else f"MLP (hidden {hidden})"


# --------------------------------------------------------------------------- point estimate
def fit_map(
    task: CodesTask, prior_std: float, steps: int, lr: float, seed: int, device: str = "cpu"
) -> nn.Module:
    """MAP of the same model and prior: full-batch Adam on ``U / N``, computed on ``device``;
    the model comes back on the CPU."""
    torch.manual_seed(seed)
    model = task.build_model().to(device)
    x, y = task.x_train.to(device), task.y_train.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    decay = 1.0 / (2.0 * prior_std**2 * task.n_train)
    for step in range(steps):
        nll = torch.nn.functional.cross_entropy(model(x), y)
        loss = nll + decay * sum((q**2).sum() for q in model.parameters())
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"MAP head loss is {loss.item()} at step {step} (lower finetune.vae_head.map_lr)"
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.cpu()


def sklearn_logreg_accuracy(data: HeadData) -> float:
    """Accuracy of the ``classify`` stage's logistic regression on the same codes."""
    pred = fit_predict_logreg(data.x_train, data.y_train, data.x_test, c=1.0, scale=True)
    return float((pred == data.y_test).mean())


# --------------------------------------------------------------------------- the experiment
def _summary(values: list[float]) -> dict[str, Any]:
    s = stats.mean_std_ci(values)
    return {"mean": s["mean"], "std": s["std"], "ci_low": s["ci_low"], "ci_high": s["ci_high"]}


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, Any]:
    """Mean over the seeds of every metric m, with ``m_std`` (ddof = 1), ``m_ci_low`` and
    ``m_ci_high`` (95 % t-interval; None for one seed)."""
    out: dict[str, Any] = {}
    for key in per_seed[0]:
        s = _summary([r[key] for r in per_seed])
        out[key] = s["mean"]
        out.update({f"{key}_{k}": s[k] for k in ("std", "ci_low", "ci_high")})
    return out


def _chain(
    params: Params, factory: CodesTaskFactory, seed: int, directory: Path, device: str
) -> tuple[Any, dict[str, float], list[np.ndarray]] | None:
    """One independent chain (engine seed ``seed``) into ``directory``: (run result, BMA
    metrics, chain functionals); None on a torchrun worker rank."""
    p = params.finetune.vae_head
    config = EngineConfig.build(
        sampler=SamplerConfig.of(params.sgmcmc.sampler, step_size=p.step_size),
        prior=p,
        exchange=params.sgmcmc,
        chain=p,
        runtime=params.runtime,
        staleness=params.sgmcmc.staleness,
        straggler_delay=0.0,
        step_size_key="finetune.vae_head.step_size",
    )
    spec = RunSpec(
        config=config,
        protocol=p.protocol,
        workers=p.workers,
        seed=seed,
        task_factory=factory,
        device=device,
    )
    info = {"item": directory.parent.name, "task": "vae_head", "label": p.label, "seed": seed}
    with Progress(f"Bayesian head seed {seed}", mlflow=True, prefix="sampling.") as progress:
        result = sample(spec, directory, info, params.sgmcmc.allow_partial, report=progress)
    if result is None:  # a torchrun worker rank
        return None
    task = factory()
    samples = read_samples(directory)
    log_probs = sample_log_probs(task, samples)
    targets = task.test_targets.numpy()
    bma, _ = evaluate_log_probs(log_probs, targets, samples, params.sgmcmc.eval_points)
    chains = chain_functionals(log_probs, targets, samples.chain, params.sgmcmc.eval_points)
    bma = {k: bma[k] for k in PREDICTIVE} | {
        "single_sample_accuracy": bma["last_samples_accuracy_mean"],
        "single_sample_log_likelihood": bma["last_samples_log_likelihood_mean"],
        "wall_s": result.wall_s,
    }
    if not all(math.isfinite(bma[k]) for k in PREDICTIVE):
        raise DivergenceError("non-finite head metrics (lower finetune.vae_head.step_size)")
    return result, bma, chains


def map_metrics(params: Params, factory: CodesTaskFactory, device: str) -> list[dict[str, float]]:
    """The MAP head's test metrics per seed (its initialisation). Softmax regression
    (``hidden: 0``) is convex, one optimum whatever the initialisation: it is fitted once, from
    the first seed, and that point estimate is every chain's comparison."""
    p = params.finetune.vae_head
    task = factory()
    out: list[dict[str, float]] = []
    for seed in p.seeds[:1] if p.hidden == 0 else p.seeds:
        model = fit_map(task, p.prior_std, p.map_steps, p.map_lr, seed, device)
        out.append(predictive_metrics(task.test_log_probs(model).numpy(), factory.data.y_test))
        if not all(math.isfinite(out[-1][k]) for k in PREDICTIVE):
            raise DivergenceError("non-finite MAP head metrics (lower finetune.vae_head.map_lr)")
    return out * len(p.seeds) if len(out) == 1 else out


def compare(bma: list[dict[str, float]], point: list[dict[str, float]]) -> dict[str, Any]:
    """BMA against MAP over the seeds, per metric: :func:`betamcmc.core.stats.paired` + verdict."""
    out = {}
    for key, higher in (("accuracy", True), ("log_likelihood", True), ("ece", False)):
        c = stats.paired([r[key] for r in bma], [r[key] for r in point], higher_is_better=higher)
        out[key] = {**c, "verdict": stats.verdict(c)}
    return out


def run_head(
    params: Params,
    data: HeadData,
    schedule: str,
    model_dir: Path,
    metrics_path: Path,
    device: str = "cpu",
) -> dict[str, Any]:
    """One chain and MAP head per ``finetune.vae_head.seeds`` seed (samples in
    ``<model_dir>/seed<k>/``), R-hat / ESS across the chains, BMA and MAP metrics over the seeds;
    writes the outputs (the metrics file last). Empty on a torchrun worker rank."""
    p = params.finetune.vae_head
    factory = CodesTaskFactory(data, p.batch_size, p.hidden)
    partial = fresh_partial(model_dir)
    runs = [_chain(params, factory, seed, partial / f"seed{seed}", device) for seed in p.seeds]
    if any(r is None for r in runs):
        return {}
    bma, point = [r[1] for r in runs], map_metrics(params, factory, device)
    diag = diagnose([c for r in runs for c in r[2]])
    majority = float(np.bincount(data.y_test, minlength=data.n_classes).max() / len(data.y_test))
    sgmcmc = aggregate(bma) | {k: diag[k] for k in ("rhat_max", "ess_bulk_min", "ess_tail_min")}
    summary: dict[str, Any] = {
        "schedule": schedule,
        "label": p.label,
        "classes": data.n_classes,
        "train_sentences": len(data.y_train),
        "test_sentences": len(data.y_test),
        "code_dim": int(data.x_train.shape[1]),
        "head": head_name(p.hidden),
        "protocol": p.protocol,
        "workers": p.workers,
        "sampler": params.sgmcmc.sampler.kind,
        "samples": runs[0][0].samples,
        "seeds": list(p.seeds),
        "n_seeds": len(p.seeds),
        "majority_baseline": majority,
        "rhat_max": diag["rhat_max"],
        "ess_bulk_min": diag["ess_bulk_min"],
        "ess_tail_min": diag["ess_tail_min"],
        "converged": diag["converged"],
        "diagnostics": diag,
        "sgmcmc": sgmcmc,
        "point_estimate": {"method": f"MAP, full-batch Adam ({p.map_steps} steps)"}
        | aggregate(point),
        "sklearn_logreg_accuracy": sklearn_logreg_accuracy(data),
        "delta": aggregate(
            [
                {k: b[k] - m[k] for k in ("accuracy", "log_likelihood", "ece")}
                for b, m in zip(bma, point, strict=True)
            ]
        ),
        "comparison": compare(bma, point),
        "per_seed": {"sgmcmc": bma, "point_estimate": point},
    }
    run_info = [{"seed": s, **r[0].as_dict()} for s, r in zip(p.seeds, runs, strict=True)]
    write_json(partial / "run.json", {"runs": run_info, "summary": summary})
    with signals_deferred():
        finalize_dir(partial, model_dir)
        write_json(metrics_path, summary)
    return summary


# --------------------------------------------------------------------------- the stage
def run_vae_head(params: Params, stage: StageItem) -> dict[str, Any]:
    """The Bayesian head on the codes of the schedule's first pretrained seed vs the MAP head
    (every chain samples the same posterior, so that R-hat across them is meaningful).
    Empty on a torchrun worker rank, which only computes gradients (no run, no outputs)."""
    schedule = stage.identity["schedule"]
    corpus = load_prepared(pipeline.stage_item("prepare").out)
    head = params.finetune.vae_head
    check_label(corpus, head.label)
    start_forkserver()  # its imports overlap this process's set-up: the codes, the MLflow run
    vae = load_vae(pipeline.stage_item("pretrain", schedule=schedule).out)
    limit_threads(params.runtime.threads)
    seed_everything(params.seed)
    data = encode_codes(vae, corpus, head)

    device = resolve_device(params.device)
    models, metrics_path = stage.out, stage.path(".json")
    if is_worker_rank():
        return run_head(params, data, schedule, models, metrics_path, device)
    identity = {"protocol": head.protocol, "workers": head.workers}
    with tracking.stage_run(params, stage, identity=identity):
        summary = run_head(params, data, schedule, models, metrics_path, device)
        tracking.log_result(
            summary,
            as_params=(
                "classes",
                "train_sentences",
                "test_sentences",
                "workers",
                "samples",
                "code_dim",
                "n_seeds",
            ),
            skip=("per_seed", "seeds"),
        )
        tracking.log_artifact(metrics_path)
    return summary
