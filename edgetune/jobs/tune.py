"""`edgetune tune`: data -> fine-tune -> export + check -> passes -> bench -> choose -> bundle.

Each candidate goes through the one `CandidateBuilder`; the pruning search (optional) adds
its candidates through the same builder. The resolved recipe is written first, so a run
stopped at any point can be repeated with `--config OUT/recipe.toml`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgetune.compress.modes import Mode, default_modes, resolve_modes, unfused
from edgetune.config import TuneConfig
from edgetune.console import console
from edgetune.defaults import default_data, default_model
from edgetune.deploy.report import write_report
from edgetune.errors import InputError, NoCandidate
from edgetune.fsutil import check_output_dir, run_lock
from edgetune.jobs.common import accuracy_agents, measuring_agents
from edgetune.jobs.tune_stages import RunState, run_stages
from edgetune.measure.latency import LatencySettings
from edgetune.measure.session import check_providers
from edgetune.modality import for_model
from edgetune.profiles import Profile, available_profiles, load_profile
from edgetune.search.record import Candidate
from edgetune.search.select import Selection
from edgetune.train.distributed import is_main_process


@dataclass
class TuneResult:
    out_dir: Path
    candidates: list[Candidate]
    selection: Selection
    best_bundle: Path | None
    report_md: Path
    recipe: Path
    profile: Profile
    stage_seconds: dict[str, float] = field(default_factory=dict)


def resolve(config: TuneConfig) -> TuneConfig:
    """Fill in the demo model and data where not given, and make local paths absolute, so
    the written recipe stands alone wherever it is run from."""
    model, data = config.model or default_model(), config.data or default_data()
    if model is None or data is None:
        missing = "--model" if model is None else "--data"
        raise InputError(
            f"{missing} not given and the demo defaults are not installed "
            "(pip install 'edgetune[demo]')"
        )
    local = {
        k: str(Path(v).resolve())
        for k, v in (("model", model), ("data", data), ("profile", config.profile))
        if Path(v).exists() and not (k == "profile" and v in available_profiles())
    }
    return config.model_copy(update={"model": model, "data": data, **local})


def tune(config: TuneConfig, settings: LatencySettings | None = None) -> TuneResult | None:
    """Raises `NoCandidate` (carrying the `TuneResult`) when nothing meets the budget.
    Checks the profile, the output folder, the model and the data before any training, and
    holds the run folder's lock until it returns. Under `torchrun`/`accelerate launch` the
    other processes only take part in training and return None."""
    config = resolve(config)
    profile = load_profile(config.profile, config.latency_budget_ms)
    if not is_main_process():  # under torchrun/accelerate: train data-parallel, write nothing
        return _train_only(config, profile)
    check_providers(profile)  # before hours of training, not after
    out = Path(config.out)
    if not config.resume:
        check_output_dir(out, config.overwrite)
    modes = resolve_modes(config.modes) or default_modes(profile.device, profile.precisions)
    if not modes:
        raise InputError(
            f"profile '{profile.name}' allows no mode (its precisions: {profile.precisions})"
        )
    resolve_modes(config.search.modes)
    if config.search.enabled and config.search.prune_configs:
        from edgetune.compress.pruning import PruneConfig

        [PruneConfig.parse(name) for name in config.search.prune_configs]  # bad names fail now
    if config.loadtest:
        from edgetune.jobs.serve import server_stack

        server_stack()  # `--loadtest` without the serve extra: say so before training
    if settings is None:
        settings = LatencySettings(
            rounds=config.latency_rounds,
            max_rounds=config.max_rounds,
            min_seconds=profile.measure_seconds,
            target=measuring_agents(config, profile),  # wrong agents are said before training
        )
    accuracy_agents(config, settings.target)  # refused now, not after training
    with run_lock(out, config.force_unlock, take_stale=config.resume):
        return _tune(config, profile, modes, out, settings)


def _tune(
    config: TuneConfig,
    profile: Profile,
    modes: list[Mode],
    out: Path,
    settings: LatencySettings,
) -> TuneResult:
    """The checks that must come before any training, then the stages (`tune_stages.py`)."""
    from edgetune.train.loop import finished_training

    train = train_settings(config, profile)
    modality = for_model(config.model, config.data)  # decided once; every stage asks it
    if not (config.resume and finished_training(out / "work", train)):
        modality.check_source(config.model)
    modes = _modes_for_family(config, modes, modality.check_trainable(config.model))  # resumed too
    modality.check_profile(config.model, profile)
    state = run_stages(RunState(config, profile, modes, out, modality, train, settings))
    state.context["stage_seconds"] = {k: round(v, 1) for k, v in state.stages.items()}
    candidates, selection = state.candidates, state.selection
    _, report_md = write_report(out, candidates, selection, state.profile, state.context)
    result = TuneResult(
        out, candidates, selection, state.best, report_md, state.recipe, state.profile, state.stages
    )
    if state.best is None:
        raise NoCandidate(selection.reason + f"; report: {report_md}", result)
    return result


SEARCH_TRAIN_MINUTES = 20.0  # fine-tuning's cap with --prune-search: the whole run ~ an hour


def _modes_for_family(config: TuneConfig, modes: list[Mode], model_type: str) -> list[Mode]:
    """Before training: a family the asked-for steps cannot handle is refused now, and the
    default menu leaves out the graph-fusion modes for a family ONNX Runtime has no recipe for."""
    from edgetune.compress.families import FAMILIES
    from edgetune.compress.onnx_passes import has_fusion_recipe, ort_model_type

    if config.search.enabled and model_type not in FAMILIES:
        raise InputError(
            f"prune search: the {model_type} family is not supported for structured "
            f"pruning (supported: {', '.join(sorted(FAMILIES))})"
        )
    fused = [m for m in modes if any(s.pass_name == "ort-fusion" for s in m.steps)]
    if not fused or has_fusion_recipe(model_type):
        return modes
    if config.modes:
        ort_model_type(model_type)  # asked for by name: the one-line refusal
    kept = [unfused(m, model_type) if m in fused else m for m in modes]
    kept = [m for m in kept if m.steps or m.name == "fp32"]  # optimized-fp32 unfused is fp32
    console.log(
        f"modes: ONNX Runtime has no fusion recipe for the {model_type} family: "
        f"{', '.join(m.name for m in fused)} built without graph fusion"
        + (
            " (optimized-fp32 left out: it would be fp32)"
            if any(m.name == "optimized-fp32" for m in fused)
            else ""
        )
    )
    return kept


def train_settings(config: TuneConfig, profile: Profile):
    """The fine-tuning settings: the profile's sequence length where unset, and with
    `--prune-search` and no `--max-train-minutes`, a 20-minute cap, so that fine-tuning, the
    search (the rest of the hour) and the bundles fit in about an hour (the schedule is fitted
    to the cap)."""
    cfg = config.train.for_profile(profile)
    if config.search.enabled and cfg.max_train_minutes is None:
        cfg = cfg.model_copy(update={"max_train_minutes": SEARCH_TRAIN_MINUTES})
    return cfg


def _train_only(config: TuneConfig, profile: Profile) -> None:
    """A non-main process of a data-parallel run: the same data and training, no writes."""
    from edgetune.train.loop import fine_tune, finished_training

    cfg = train_settings(config, profile)
    work = Path(config.out) / "work"
    if config.resume and finished_training(work, cfg):
        return
    dataset = for_model(config.model, config.data).load_data(config, cfg.seed, config.model)
    fine_tune(config.model, dataset, work, cfg, resume=config.resume)
