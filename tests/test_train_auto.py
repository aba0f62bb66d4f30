"""Training that tunes itself: the LR range test, layer-wise distillation, early stop at a target,
and a recovery that resumes from its checkpoint. Tiny model, seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgetune.train.callbacks import TargetCallback
from edgetune.train.distill import DistillConfig, default_layer_map
from edgetune.train.loop import TrainConfig, fine_tune
from edgetune.train.lr_find import suggest


@pytest.fixture(scope="module")
def dataset(tiny_data_csv):
    from edgetune.data.text import load_text_dataset
    from edgetune.modality.text import TextModality

    return TextModality().adopt(load_text_dataset(tiny_data_csv))


def test_suggestion_is_a_tenth_of_the_lowest_loss_lr():
    lrs = list(np.logspace(-7, 0, 100))
    # flat, then falling fastest around 1e-3, lowest near 1e-2, then diverging
    losses = [
        1.0 - 0.8 / (1 + np.exp(-4 * (np.log10(lr) + 3))) + (5 * (lr - 1e-2) if lr > 1e-2 else 0)
        for lr in lrs
    ]
    lowest = lrs[int(np.argmin(losses))]
    assert 5e-3 <= lowest <= 2e-2 and suggest(lrs, losses) == pytest.approx(lowest / 10)


def test_fine_tune_finds_its_learning_rate_and_saves_the_curve(tiny_model_dir, dataset, tmp_path):
    config = TrainConfig(max_steps=4, batch_size=16, max_length=32, eval_steps=2)
    result = fine_tune(str(tiny_model_dir), dataset, tmp_path, config)
    found = result.lr_find
    assert found and min(found["learning_rates"]) <= found["suggestion"] <= max(
        found["learning_rates"]
    )
    assert result.learning_rate == found["suggestion"] and found["seconds"] < 60
    assert (tmp_path / "lr_find.png").stat().st_size > 1000
    assert json.loads((tmp_path / "lr_find.json").read_text())["suggestion"] == found["suggestion"]


def test_a_given_learning_rate_skips_the_range_test(tiny_model_dir, dataset, tmp_path):
    result = fine_tune(
        str(tiny_model_dir),
        dataset,
        tmp_path,
        TrainConfig(max_steps=2, batch_size=16, max_length=32, learning_rate=1e-3),
    )
    assert result.lr_find is None and result.learning_rate == 1e-3
    assert not (tmp_path / "lr_find.json").exists()


def test_layer_map_defaults():
    assert default_layer_map(6, 6) == [0, 1, 2, 3, 4, 5]
    assert default_layer_map(3, 6) == [1, 3, 5]
    assert DistillConfig.named("logits").hidden_weight == 0


def test_layerwise_distillation_of_a_shallower_narrower_student_resumes(
    tiny_model_dir, dataset, tmp_path
):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune.compress.pruning import PruneConfig
    from edgetune.compress.recover import distill_student, make_student

    teacher = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=2
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    pruned = make_student(teacher, PruneConfig(layers=1, ffn=0.5), importance="magnitude")
    assert pruned.model.config.num_hidden_layers == 1
    config = TrainConfig(max_steps=4, eval_steps=2, batch_size=16, max_length=32)
    first = distill_student(pruned, tokenizer, teacher, dataset, tmp_path, config)
    assert first.steps == 4 and first.lr_find is not None
    kept = pruned.steps[0]["chose"]["kept_layers"]
    assert len(kept) == 1
    again = make_student(teacher, PruneConfig(layers=1, ffn=0.5), importance="magnitude")
    longer = config.model_copy(update={"max_steps": 6})
    resumed = distill_student(again, tokenizer, teacher, dataset, tmp_path, longer, resume=True)
    assert resumed.steps == 6  # went on from checkpoint-4 rather than from step 0
    assert resumed.learning_rate == first.learning_rate  # the saved range test, not a new one


def test_layer_loss_is_part_of_the_distillation_loss(tiny_model_dir, dataset):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

    from edgetune.compress.pruning import PruneConfig
    from edgetune.compress.recover import make_student
    from edgetune.train.distill import DistillationTrainer

    teacher = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=2
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    student = make_student(teacher, PruneConfig(layers=1), importance="magnitude").model
    batch = dict(tokenizer(["good film", "bad plot"], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([1, 0])
    args = TrainingArguments(output_dir="/tmp/unused", use_cpu=True, report_to="none")
    losses = {}
    for kind in ("logits", "layerwise"):
        trainer = DistillationTrainer(
            model=student,
            args=args,
            teacher=teacher,
            distill=DistillConfig.named(kind, layer_map=[1]),
        )
        losses[kind] = float(trainer.compute_loss(student, batch))
    assert losses["layerwise"] > losses["logits"] > 0
    with_attention = DistillConfig(attention_weight=1.0, layer_map=[1])
    trainer = DistillationTrainer(model=student, args=args, teacher=teacher, distill=with_attention)
    assert float(trainer.compute_loss(student, batch)) > losses["logits"]


def test_target_callback_stops_at_the_target():
    class Control:
        should_training_stop = should_save = False

    callback, control = TargetCallback(0.9), Control()
    callback.on_evaluate(None, None, control, metrics={"eval_accuracy": 0.85})
    assert not control.should_training_stop
    callback.on_evaluate(None, None, control, metrics={"eval_accuracy": 0.91})
    assert control.should_training_stop and callback.hit


def test_the_batch_size_is_the_smallest_that_reaches_the_best_throughput():
    from edgetune.train.batch_size import choose, saturated

    assert choose({8: 100.0, 16: 190.0, 32: 200.0, 64: 195.0, 128: 150.0}) == 16
    assert choose({8: 300.0, 16: 200.0}) == 8  # bigger was slower: stay small
    assert choose({8: 10.1, 16: 10.0, 32: 10.2, 64: 9.9, 128: 10.0}) == 8  # flat (CPU, long rows)
    assert not saturated({8: 100.0}) and not saturated({8: 100.0, 16: 190.0})
    assert saturated({8: 100.0, 16: 190.0, 32: 199.0})  # under 5 % more: the sweep stops
    assert saturated({8: 300.0, 16: 200.0})


def test_auto_batch_size_is_measured_before_the_lr_and_kept_on_resume(
    tiny_model_dir, dataset, tmp_path
):
    from edgetune.train.batch_size import SIZES

    config = TrainConfig(max_steps=2, max_length=32, eval_steps=2)  # batch_size "auto", lr "auto"
    result = fine_tune(str(tiny_model_dir), dataset, tmp_path, config)
    sized = result.batch_size
    assert sized["chosen"] in SIZES and sized["examples_per_second"]
    rates = {int(s): r for s, r in sized["examples_per_second"].items()}
    assert sized["chosen"] == min(s for s, r in rates.items() if r >= 0.95 * max(rates.values()))
    assert result.lr_find is not None  # found after, for the chosen size
    saved = json.loads((tmp_path / "batch_size.json").read_text())
    again = fine_tune(str(tiny_model_dir), dataset, tmp_path, config, resume=True)
    assert again.batch_size == saved == sized


def test_a_time_budget_plans_the_steps_that_fit_in_it():
    from types import SimpleNamespace

    from edgetune.train.autoset import TIME_FIT, fit_schedule_to_time
    from edgetune.train.batch_size import BatchSizeResult

    sized = BatchSizeResult(32, {16: 90.0, 32: 100.0}, "largest size tried", 1.0)

    def planned(config: TrainConfig, rows: int = 10_000) -> int:
        trainer = SimpleNamespace(args=SimpleNamespace(max_steps=config.max_steps))
        fit_schedule_to_time(trainer, config, sized, rows)
        return trainer.args.max_steps

    assert planned(TrainConfig(max_train_minutes=1.0)) == int(TIME_FIT * 60 * 100 / 32)  # < 939
    # no epochs: the budget is the plan, far past 3 epochs (939 steps); early stopping may end it
    assert planned(TrainConfig(max_train_minutes=60.0)) == int(TIME_FIT * 3600 * 100 / 32)
    assert planned(TrainConfig(max_train_minutes=60.0, epochs=3)) == -1  # the 3 given epochs fit
    assert planned(TrainConfig(max_train_minutes=1.0, epochs=3)) == int(TIME_FIT * 60 * 100 / 32)
    assert planned(TrainConfig()) == -1  # no time budget
    assert planned(TrainConfig(max_train_minutes=1.0, max_steps=7)) == 7  # steps given: kept


def test_training_until_no_gain_evaluates_several_times_an_epoch():
    from edgetune.train.autoset import eval_every

    assert eval_every(1000, 10, TrainConfig(max_train_minutes=5.0)) == 25  # 100 steps an epoch
    assert eval_every(1000, 10, TrainConfig(max_train_minutes=5.0, epochs=2)) == 100
    assert eval_every(1000, 10, TrainConfig()) == 100
    assert eval_every(10**6, 10, TrainConfig(max_train_minutes=5.0)) == 500  # at most 500 apart


def test_evaluations_during_training_see_a_fixed_stratified_sample_of_a_large_set():
    import datasets

    from edgetune.train.loop import EVAL_ROWS, evaluation_rows

    labels = [0] * 2700 + [1] * 300  # 10 % positives
    rows = datasets.Dataset.from_dict({"text": [f"row {i}" for i in range(3000)], "label": labels})
    rows = rows.cast_column("label", datasets.ClassLabel(names=["no", "yes"]))
    sample = evaluation_rows(rows, seed=1)
    assert len(sample) == EVAL_ROWS and sum(sample["label"]) == EVAL_ROWS // 10
    assert sample["text"] == evaluation_rows(rows, seed=1)["text"]  # the same rows every time
    assert len(evaluation_rows(rows.select(range(500)), seed=1)) == 500  # small: all of it


@pytest.fixture(scope="module")
def slow_learner(tmp_path_factory):
    """A task learnt word by word: each text holds one of 40 cue words of its class, common ones
    far more often than rare ones, so accuracy keeps rising for epochs as rarer cues are learnt
    (the tiny BERT with larger initial weights and no dropout starts learning at once)."""
    import random

    import torch
    from conftest import FILLER, write_csv
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from edgetune.data.text import load_text_dataset
    from edgetune.modality.text import TextModality

    folder = tmp_path_factory.mktemp("slow-learner")
    cues = {label: [f"{label[:3]}{i}" for i in range(40)] for label in ("positive", "negative")}
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *cues["positive"],
        *cues["negative"],
        *FILLER,
    ]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(
        folder
    )
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            initializer_range=0.2,
            hidden_dropout_prob=0.0,
        )
    ).save_pretrained(folder)
    rng, rows = random.Random(0), []
    for i in range(800):
        label = ("positive", "negative")[i % 2]
        words = rng.choices(FILLER, k=rng.randint(3, 8))
        words += rng.choices(cues[label], weights=[1 / (rank + 1) for rank in range(40)])
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return folder, TextModality().adopt(load_text_dataset(write_csv(folder / "cues.csv", rows)))


def test_a_time_budget_without_epochs_trains_past_three_epochs_while_it_improves(
    slow_learner, tmp_path
):
    """The old default stopped at 3 epochs with minutes left and accuracy still rising. Now a
    budget alone trains while evaluations improve: past epoch 3, where its best one is, then
    early stopping ends it long before the budget (ten minutes)."""
    model_dir, data = slow_learner
    config = TrainConfig(
        max_train_minutes=10.0,
        batch_size=32,
        learning_rate=3e-3,
        max_length=16,
        scheduler="plateau",
        early_stopping_patience=8,
    )
    result = fine_tune(str(model_dir), data, tmp_path, config)
    assert result.epochs > 3 and result.stopped_by.startswith("early stopping"), result.to_json()
    state = json.loads(
        max(
            (tmp_path / "checkpoints").glob("checkpoint-*/trainer_state.json"),
            key=lambda p: int(p.parent.name.split("-")[1]),
        ).read_text()
    )
    evaluations = [
        (e["epoch"], e["eval_accuracy"]) for e in state["log_history"] if "eval_accuracy" in e
    ]
    assert len(evaluations) >= 4 * 3  # 4 an epoch
    best_epoch = max(evaluations, key=lambda e: (e[1], -e[0]))[0]
    assert best_epoch > 3, evaluations  # the epochs past 3 paid


def test_a_plateau_stops_by_patience_before_the_budget(tiny_model_dir, dataset, tmp_path):
    """A learning rate too small to move the weights: accuracy stays put at every evaluation,
    and the run ends after `patience` of them, long before its budget; the report says so."""
    from test_select import PROFILE, cand

    from edgetune.deploy.report import render_markdown
    from edgetune.search.select import check_budget, choose

    config = TrainConfig(
        max_train_minutes=1.0,
        batch_size=16,
        learning_rate=1e-12,
        max_length=32,
        early_stopping_patience=2,
    )
    result = fine_tune(str(tiny_model_dir), dataset, tmp_path, config)
    assert result.stopped_by.startswith("early stopping: 2 evaluations in a row"), result.stopped_by
    assert result.epochs < 1.5 and result.train_seconds < 60
    chosen = [check_budget(cand("fp32", 0.5, 3), PROFILE)]
    trained = result.to_json()
    report = render_markdown(chosen, choose(chosen, PROFILE), PROFILE, {"train": trained})
    assert f"**Fine-tuning** stopped by {result.stopped_by} ({trained['epochs']:g} epochs" in report


def test_the_run_is_replanned_from_its_measured_pace(monkeypatch):
    """40 steps took 40 s, 1 min at 0.8 leaves 8 s: the run ends at step 48, and the decay
    schedule is stretched to end there (the warm-up left scaled alike)."""
    from types import SimpleNamespace

    import torch
    from transformers import TrainerControl, get_linear_schedule_with_warmup

    from edgetune.train import callbacks

    clock = iter([0.0, 40.0, 40.0])
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: next(clock))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, 100, 1000)
    fit = callbacks.FitToTimeCallback(minutes=1.0, fit=0.8)
    state = SimpleNamespace(global_step=0, max_steps=1000)
    fit.on_train_begin(None, state, TrainerControl())
    state.global_step = 40
    fit.on_step_end(None, state, TrainerControl(), lr_scheduler=scheduler)
    assert state.max_steps == 48 and fit.replanned == (1000, 48)
    [stretched] = scheduler.lr_lambdas
    # 40 of 100 warm-up steps done: what is left of the warm-up is scaled (60 x 0.048 = 3), not
    # what is done (scaling all of it would end the warm-up at step 5, behind the run: a jump)
    assert stretched(48) == 0.0 and stretched.keywords["num_warmup_steps"] == 43
    assert stretched(40) < stretched(43) == 1.0
    state.global_step = 48
    control = fit.on_step_end(None, state, TrainerControl(), lr_scheduler=scheduler)
    assert control.should_evaluate and control.should_save  # the new end is evaluated and kept


def test_a_flat_noisy_curve_does_not_pick_its_first_wiggle():
    """A distillation loss is nearly flat until it dips before diverging (seen on SST-2: the
    point-to-point slope picked 1.2e-7, the second LR of the sweep, and the student learnt
    nothing); the start of the sweep, where the average has seen a few batches, is left out."""
    rng = np.random.default_rng(0)
    lrs = list(np.logspace(-7, 0, 100))
    losses = [
        1.45
        + 0.01 * rng.standard_normal()
        - (0.04 if 1e-4 < lr < 4e-4 else 0)
        + (3 * lr if lr > 1e-3 else 0)
        for lr in lrs
    ]
    losses[1] = 1.30  # a wiggle right at the start, lower than the dip
    lowest = lrs[10 + int(np.argmin(losses[10:]))]
    assert 1e-4 < lowest < 4e-4 and suggest(lrs, losses) == pytest.approx(lowest / 10)


def test_a_curve_that_never_falls_gets_the_trainers_default_not_its_noise():
    """An SST-2 L2 student's loss stayed within 0.1 % of its start over the whole sweep; the
    minimum rule read noise (1.9e-7) and the student stayed at chance (benchmarks/RESULTS.md)."""
    from types import SimpleNamespace

    import torch

    from edgetune.train.lr_find import NO_DESCENT, find_lr

    rng = np.random.default_rng(1)
    lrs = list(np.logspace(-7, 0, 100))
    flat = [1.37 + 0.002 * rng.standard_normal() + (3 * lr if lr > 5e-3 else 0) for lr in lrs]
    assert suggest(lrs, flat) is None

    model = torch.nn.Linear(2, 2)
    trainer = SimpleNamespace(
        model=model,
        args=SimpleNamespace(weight_decay=0.0, group_by_length=False, learning_rate=5e-5),
        get_train_dataloader=lambda: [{"x": torch.ones(1, 2)}] * 4,
        _prepare_inputs=lambda batch: batch,
        compute_loss=lambda m, batch: m(batch["x"]).sum() * 0 + 1.37,
    )  # no LR moves this loss
    found = find_lr(trainer, steps=30)
    assert found.suggestion == 5e-5 and found.method.startswith(NO_DESCENT)


def test_the_range_tests_choice_is_capped_and_the_record_says_so():
    from edgetune.train.lr_find import LrFindResult, capped

    found = LrFindResult([1e-6, 1e-3], [1.0, 0.5], suggestion=2.2e-4, steps=2, seconds=1.0)
    lowered = capped(found, 1e-4)
    assert lowered.suggestion == 1e-4 and "capped at 0.0001" in lowered.method
    assert capped(found, None) is found and capped(found, 3e-4) is found
    assert TrainConfig().max_auto_learning_rate == 1e-4
