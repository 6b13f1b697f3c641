"""A job's plan (fast: no training): `auto` hyperparameters resolved from the data's size, and the trainer
config built from them."""

import pytest

from service.fine_tuning.plan import BASE_LEARNING_RATE, plan
from service.fine_tuning.protocol import Hyperparameters

BASE = {"model_name_or_path": "/m", "dataset": "/d.jsonl", "output_dir": "/o", "seed": 1}


def test_auto_resolves_from_the_dataset_size_and_says_so():
    p = plan(Hyperparameters(), 100, BASE)
    assert (p.batch_size, p.n_epochs, p.learning_rate_multiplier) == (1, 10, 1.0)
    assert p.total_steps == 100 * 10
    assert "batch_size=1" in p.auto_note and "n_epochs=10" in p.auto_note
    big = plan(Hyperparameters(), 20_000, BASE)
    assert (big.batch_size, big.n_epochs) == (32, 3)


def test_given_values_are_kept_and_an_absolute_learning_rate_wins():
    p = plan(Hyperparameters(batch_size=4, n_epochs=2, learning_rate=3e-4), 40, BASE)
    assert (p.batch_size, p.n_epochs, p.total_steps, p.auto_note) == (4, 2, 20, None)
    assert p.learning_rate == pytest.approx(3e-4) and p.learning_rate_multiplier == pytest.approx(3e-4 / BASE_LEARNING_RATE)
    assert p.spec["per_device_train_batch_size"] == 4 and p.spec["resume_from_checkpoint"] == "latest"


def test_checkpoints_are_spread_over_the_run():
    p = plan(Hyperparameters(batch_size=1, n_epochs=1, n_checkpoints=3), 100, BASE)
    assert p.spec["save_steps"] == 25
    assert plan(Hyperparameters(batch_size=1, n_epochs=1, n_checkpoints=0), 100, BASE).spec["save_steps"] == 0


def test_preference_and_kto_extensions_reach_the_trainer_s_config():
    from service.fine_tuning.protocol import Method

    dpo = Method.model_validate({"type": "dpo", "dpo": {"hyperparameters": {
        "pref_loss": "simpo", "simpo_gamma": 1.0, "pref_ftx": 0.5, "batch_size": 2}}}).settings.hyperparameters
    spec = plan(dpo, 10, {**BASE, "stage": "dpo"}).spec
    assert (spec["pref_loss"], spec["simpo_gamma"], spec["pref_ftx"], spec["pref_beta"]) == ("simpo", 1.0, 0.5, 0.1)
    kto = Method.model_validate({"type": "kto", "kto": {"hyperparameters": {
        "desirable_weight": 2.0, "batch_size": 2}}}).settings.hyperparameters
    spec = plan(kto, 10, {**BASE, "stage": "kto"}).spec
    assert (spec["kto_chosen_weight"], spec["pref_beta"]) == (2.0, 0.1) and "kto_rejected_weight" not in spec
    assert Method.model_validate({"type": "kto"}).settings.hyperparameters.beta == "auto"
