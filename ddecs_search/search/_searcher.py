"""Optuna samplers behind Ray Tune's OptunaSearch, a concurrency limit and optional ASHA."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any

from ddecs_search._imports import require
from ddecs_search.config import Objective, SearchSpace
from ddecs_search.search._objectives import metric_and_mode
from ddecs_search.search._space_fn import ConditionalSpace, config_key


def sampler_settings(space: SearchSpace) -> dict[str, Any]:
    """The sampler a search runs, with every automatic value resolved (what :func:`make_sampler` builds).

    One owner for the description and the construction: a benchmark or a report that summarises searches
    made with different settings (``search.tpe``, ``search.population_size``) reads them from here, so a
    figure never silently pools two samplers under one algorithm's name.
    """
    cfg = space.search
    if cfg.algorithm == "random":  # the same distribution over networks on either encoding
        return {"algorithm": "random"}
    if cfg.algorithm == "tpe":
        tpe = cfg.tpe
        return {
            "algorithm": "tpe",
            "n_startup_trials": tpe.startup_trials(cfg.num_samples),
            "multivariate": tpe.multivariate,
            "group": tpe.group,
            "constant_liar": tpe.constant_liar,
            "n_ei_candidates": tpe.n_ei_candidates,
            "encoding": cfg.space_encoding,
        }
    if cfg.algorithm == "gp":
        return {
            "algorithm": "gp",
            "n_startup_trials": cfg.gp.startup_trials(cfg.num_samples),
            "pin_unused": cfg.gp.pin_unused and cfg.space_encoding == "flat",  # nothing unused otherwise
            "encoding": cfg.space_encoding,
        }
    return {"algorithm": "nsga2", "population_size": nsga2_population(space), "encoding": cfg.space_encoding}


def make_sampler(space: SearchSpace) -> Any:
    """NSGA-II, TPE, GP or random sampling, seeded from ``search.seed``, as :func:`sampler_settings` says.

    NSGA-II's population defaults to a third of the budget (4..50) so that a small budget still sees
    several generations; TPE takes ``search.tpe`` (by default multivariate with ``group=True``, Optuna's
    mode for conditional spaces, and the constant liar for parallel trials); GP takes ``search.gp`` and
    treats the objectives as noisy (accuracy on a finite selection set is), with running trials as a
    q-batch; with ``pin_unused`` it sees the flat encoding's unused parameters pinned (the space function).
    The encoding (``search.encoding``) is the space function's, not the sampler's.
    """
    optuna = require("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from ddecs_search.search import _samplers  # Optuna's classes, picklable (Tune pickles its searcher)

    settings = sampler_settings(space)
    algorithm = settings.pop("algorithm")
    settings.pop("encoding", None)
    seed = space.search.seed
    if algorithm == "random":
        return _samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():  # multivariate/group/constant_liar are flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if algorithm == "tpe":
            return _samplers.TPESampler(seed=seed, **settings)
        if algorithm == "gp":  # on the conditional encoding, every parameter not in all trials is random
            pin = ConditionalSpace.from_space(space) if settings.pop("pin_unused") else None
            return _samplers.GPSampler(seed=seed, warn_independent_sampling=False, pin_unused=pin, **settings)
        return _samplers.NSGAIISampler(seed=seed, **settings)


def nsga2_population(space: SearchSpace) -> int:
    """``search.population_size``, else a third of ``num_samples`` clamped to 4..50."""
    cfg = space.search
    return cfg.population_size or min(50, max(4, cfg.num_samples // 3))


def sampler_notice(space: SearchSpace, full_fidelity: int) -> str | None:
    """A notice when NSGA-II cannot have left its first generation, else None (a budget of one
    generation or less, or fewer full-fidelity trials than the population).

    Optuna's NSGA-II fills a generation with *complete* trials only, and a trial stopped early reaches
    it as pruned. Its first generation is random sampling (the stream ``algorithm: random`` draws with
    the same seed), so with fewer full-fidelity trials than its population every trial was sampled at
    random: a search labelled NSGA-II that was a random search must say so (docs/search_space.md,
    "NSGA-II and early stopping": 5-10 of 24 trials complete on the default space).
    """
    cfg = space.search
    if cfg.algorithm != "nsga2":
        return None
    population = nsga2_population(space)
    size = "search.population_size" if cfg.population_size else "auto: a third of num_samples, at least 4"
    if cfg.num_samples <= population:
        return (
            f"NSGA-II sampled every trial at random: its first generation ({population} trials, {size}) "
            f"is the whole budget of {cfg.num_samples}"
        )
    if full_fidelity >= population:
        return None
    return (
        f"NSGA-II sampled every trial at random: only {full_fidelity} of {cfg.num_samples} trials "
        f"reached full fidelity and its first generation needs {population} ({size}); trials stopped "
        "early do not count. With early stopping on, algorithm: tpe learns from stopped trials too"
    )


def make_search_alg(space: SearchSpace, objectives: Sequence[Objective], exp_root: str | None = None) -> Any:
    """``ConcurrencyLimiter(OptunaSearch(space=define-by-run, metric, mode, sampler), max_concurrent)``;
    the searcher answers a draw of an evaluated candidate itself (:class:`FullFidelityOptunaSearch`)."""
    from ray.tune.search import ConcurrencyLimiter

    from ddecs_search.search._optuna_search import FullFidelityOptunaSearch
    from ddecs_search.search._warm_start import warm_start_points

    metric, mode = metric_and_mode(objectives)
    fn = ConditionalSpace.from_space(space)
    searcher = FullFidelityOptunaSearch(
        space=fn,
        metric=metric,
        mode=mode,
        sampler=make_sampler(space),
        points_to_evaluate=warm_start_points(space, fn) or None,
        constraints=space.constraints,
        candidate_key=functools.partial(config_key, space, fn),  # a repeated draw is told, not run
        exp_root=exp_root,  # a resume adopts results stored after Tune last saved its state
    )
    return ConcurrencyLimiter(searcher, max_concurrent=space.search.max_concurrent)


def proxy_key(objective: Objective) -> str:
    """Name of the per-epoch proxy of the single objective that ASHA compares."""
    return f"epoch_{objective.name}"


def make_scheduler(space: SearchSpace, objectives: Sequence[Objective]) -> Any:
    """ASHA on branch-training epochs (single objective only), or None."""
    if not space.search.asha:
        return None
    from ray.tune.schedulers import ASHAScheduler

    (objective,) = objectives
    # stop_last_trials=False: a trial that trains all its epochs goes on to its full evaluation
    return ASHAScheduler(
        time_attr="epoch",
        metric=proxy_key(objective),
        mode=objective.mode,
        max_t=max(max(space.training.epochs), 1),
        grace_period=1,
        reduction_factor=2,
        stop_last_trials=False,
    )
