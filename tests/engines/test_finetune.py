"""finetune: the price target, batch order, schedule, label masking, atomic checkpoints, and tiny real runs on the
4-bit default model: exact resume after a kill, the adapter's record and hash check, loading it for prediction."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pricer.engines.finetune import adapter, checkpoints, recipe, training
from pricer.engines.finetune.checkpoints import Checkpoint
from pricer.engines.finetune.config import FinetuneConfig, StopTraining
from pricer.errors import ModelError, OptionError
from pricer.task.items import Item
from pricer.task.prompts import PRICE_PREFIX, QUESTION

# A tiny run: six short items, batches of 2, rank 4. Four steps take ~5 s on one core of the CI's AMD EPYC.
TINY = FinetuneConfig(steps=4, batch_size=2, rank=4, lr=1e-3, checkpoint_every=2)
KILL_AT = 3  # after the checkpoint of step 2: resuming must redo step 3 exactly
PRICES = {"desk lamp": 19.99, "cordless drill": 89.5, "car tyre": 120.0, "usb cable": 7.25, "sofa": 499.0, "mug": 4.5}


def _items() -> list[Item]:
    return [Item(index=number, title=name, price=price,
                 prompt=f"{QUESTION}\n\n{name}\nA {name} for the home.\n\n{PRICE_PREFIX}")
            for number, (name, price) in enumerate(PRICES.items(), start=1)]


# ---------------------------------------------------------------- pure pieces


@pytest.mark.parametrize(("price", "text"),
                         [(20.95, "21.00"), (7.99, "8.00"), (2.5, "2.00"), (3.5, "4.00"), (999.0, "999.00")])
def test_target_is_the_price_in_whole_dollars_as_the_course_trains(price, text):
    assert recipe.target_text(price) == text


def test_batches_cover_every_item_once_per_epoch_in_a_seeded_order():
    steps = [recipe.batch_indices(step, n_items=12, batch_size=4, seed=7) for step in range(3)]
    assert sorted(i for batch in steps for i in batch) == list(range(12))
    assert steps == [recipe.batch_indices(step, n_items=12, batch_size=4, seed=7) for step in range(3)]
    assert steps != [recipe.batch_indices(step, n_items=12, batch_size=4, seed=8) for step in range(3)]


def test_batch_spanning_two_epochs_takes_the_next_epochs_order():
    # 5 items, batches of 2: step 2 holds the last item of epoch 0 and the first of epoch 1.
    first = [i for step in range(2) for i in recipe.batch_indices(step, n_items=5, batch_size=2, seed=1)]
    straddling = recipe.batch_indices(2, n_items=5, batch_size=2, seed=1)
    assert straddling[0] == (set(range(5)) - set(first)).pop()


def test_learning_rate_warms_up_then_decays_to_zero():
    lrs = [recipe.lr_at(step, lr=1.0, steps=20, warmup_steps=2) for step in range(21)]
    assert lrs[:2] == [0.5, 1.0]
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert lrs[20] == pytest.approx(0.0, abs=1e-12)


def test_collate_left_pads_and_labels_only_the_price_tokens():
    batch = recipe.collate([([11, 12, 13], [7, 8, 2]), ([21], [5, 2])], pad_id=0)
    assert batch["input_ids"].tolist() == [[11, 12, 13, 7, 8, 2], [0, 0, 0, 21, 5, 2]]
    assert batch["attention_mask"].tolist() == [[1] * 6, [0, 0, 0, 1, 1, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 1, 2]]
    # The last `keep` logits (4 here) predict the 3 last tokens; prompt positions are ignored (-100).
    assert batch["keep"] == 4
    assert batch["labels"].tolist() == [[7, 8, 2], [-100, 5, 2]]


def test_config_refuses_8bit_training_naming_the_trainable_widths():
    with pytest.raises(OptionError, match=r"bits: '8' is not one of 4, 16, 32"):
        FinetuneConfig(bits=8)


@pytest.mark.parametrize(("field", "value"), [("steps", 0), ("lr", 0.0), ("lr", float("nan")), ("rank", -1)])
def test_config_refuses_values_that_cannot_train(field, value):
    with pytest.raises(OptionError, match=field):
        FinetuneConfig(**{field: value})


def test_cli_rejects_a_non_positive_learning_rate_quoting_it(capsys):
    from pricer.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["finetune", "--out", "x", "--lr", "0"])
    assert "--lr: '0' must be a finite number > 0" in capsys.readouterr().err


# ---------------------------------------------------------------- checkpoints on disk


def _checkpoint(step: int) -> Checkpoint:
    import torch

    return Checkpoint(step=step, adapter={"a": torch.full((2, 3), float(step))},
                      optimizer={"state.0.step": torch.tensor(float(step)), "rng.torch": torch.get_rng_state()},
                      made_with={"hyperparameters": {"lr": 1e-8}}, losses=(1.5, 0.1 + 0.2), tokens=10, seconds=1.25)


def test_checkpoint_round_trips_tensors_and_floats_exactly(tmp_path):
    import torch

    checkpoints.save_checkpoint(tmp_path, _checkpoint(2))
    loaded = checkpoints.load_checkpoint(tmp_path)
    assert loaded.step == 2 and torch.equal(loaded.adapter["a"], torch.full((2, 3), 2.0))
    assert loaded.made_with == {"hyperparameters": {"lr": 1e-8}}  # not rounded to 0 as 6-digit JSON would
    assert loaded.losses == (1.5, 0.1 + 0.2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_a_newer_checkpoint_replaces_the_older_whole(tmp_path):
    checkpoints.save_checkpoint(tmp_path, _checkpoint(2))
    checkpoints.save_checkpoint(tmp_path, _checkpoint(4))
    assert checkpoints.load_checkpoint(tmp_path).step == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_kill_between_the_checkpoint_renames_recovers_the_older_checkpoint(tmp_path):
    checkpoints.save_checkpoint(tmp_path, _checkpoint(2))
    os.replace(tmp_path / "checkpoint", tmp_path / ".checkpoint.old")  # the first rename happened, not the second
    (tmp_path / ".checkpoint.new").mkdir()  # the new one was half written
    assert checkpoints.load_checkpoint(tmp_path).step == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_checkpoint_without_its_state_file_fails_naming_the_fix(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    with pytest.raises(ModelError, match=r"incomplete checkpoint .* delete it to start over"):
        checkpoints.load_checkpoint(tmp_path)


# ---------------------------------------------------------------- tiny real runs on the 4-bit default model


@pytest.fixture(scope="module")
def base():
    """The 4-bit default base, loaded once for every run in this module (each run gives it back unchanged)."""
    pytest.importorskip("bitsandbytes", reason="4-bit QLoRA needs bitsandbytes")
    from pricer.engines.transformers.loading import load_model

    loaded = load_model("default", bits=4, compute_dtype="float32", device="cpu")
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def uninterrupted(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    return training.finetune(TINY, _items(), out=out, base=base, progress=False, data_source="tiny")


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


@pytest.mark.e2e  # a training process killed: `pytest -m e2e`
def test_resumed_run_after_a_kill_gives_the_same_adapter_as_an_uninterrupted_one(base, uninterrupted, tmp_path):
    import torch

    def kill(step: int, loss: float) -> None:
        if step == KILL_AT:
            raise StopTraining

    with pytest.raises(StopTraining):
        training.finetune(TINY, _items(), out=tmp_path, base=base, on_step=kill, progress=False)
    assert checkpoints.load_checkpoint(tmp_path).step == 2  # step 3's update died with the process
    resumed = training.finetune(TINY, _items(), out=tmp_path, base=base, progress=False, data_source="tiny")

    assert resumed.resumed_from == 2 and resumed.steps == TINY.steps
    expected, got = _weights(uninterrupted.out), _weights(tmp_path)
    assert expected.keys() == got.keys() and len(expected) == 7 * 30 * 2  # A and B of 7 linears in 30 layers
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    assert resumed.last_loss == pytest.approx(uninterrupted.last_loss, rel=1e-5)
    assert not (tmp_path / "checkpoint").exists()


def test_training_lowers_the_price_loss(uninterrupted):
    assert uninterrupted.last_loss < 0.7 * uninterrupted.first_loss


def test_resume_under_other_options_fails_naming_the_changed_fields(base, tmp_path):
    def kill(step: int, loss: float) -> None:
        if step == TINY.checkpoint_every:
            raise StopTraining

    with pytest.raises(StopTraining):
        training.finetune(TINY, _items(), out=tmp_path, base=base, on_step=kill, progress=False)
    other = FinetuneConfig(steps=4, batch_size=2, rank=4, lr=5e-4, checkpoint_every=2)
    changed = r"made by a different run \(hyperparameters\.lr: 0\.001 -> 0\.0005\).*delete"
    with pytest.raises(OptionError, match=changed):
        training.finetune(other, _items(), out=tmp_path, base=base, progress=False)


def test_resume_flag_without_a_checkpoint_fails(base, tmp_path):
    with pytest.raises(OptionError, match=r"--resume: .*checkpoint not found"):
        training.finetune(TINY, _items(), out=tmp_path, resume=True, base=base, progress=False)


def test_a_folder_holding_a_finished_adapter_is_not_overwritten(base, uninterrupted):
    with pytest.raises(OptionError, match=r"already holds a trained adapter"):
        training.finetune(TINY, _items(), out=uninterrupted.out, base=base, progress=False)


def test_record_names_base_and_data_hashes_hyperparameters_versions_and_speed(base, uninterrupted):
    from pricer.task.items import items_digest

    record = json.loads((uninterrupted.out / adapter.RECORD).read_text())
    assert record["base_model_sha256"] == base.info.weights_sha256
    assert record["data"] == {"source": "tiny", "n_items": 6, "sha256": items_digest(_items())}
    assert record["hyperparameters"]["rank"] == 4 and record["hyperparameters"]["lora_alpha"] == 8
    assert record["hyperparameters"]["lr"] == 1e-3 and record["steps"] == 4
    assert set(record["versions"]) >= {"torch", "transformers", "peft", "bitsandbytes", "pricer"}
    assert record["tokens_per_second"] > 0 and record["compute_dtype"] == "float32"
    assert adapter.read_record(uninterrupted.out).steps == 4


def test_adapter_fits_only_its_base_by_weights_hash(base, uninterrupted):
    from pricer.engines.transformers.adapters import check_adapter

    name, folder = base.info.name, Path(base.info.path)
    check_adapter(uninterrupted.out, base=(name, folder, base.info.weights_sha256, frozenset()))
    with pytest.raises(ModelError, match="adapter made for base weights sha256"):
        check_adapter(uninterrupted.out, base=(name, folder, "0" * 64, frozenset({name})))


def test_trained_adapter_loads_for_prediction_and_writes_whole_dollars(uninterrupted):
    from pricer.engines.predict import LLMPredictor
    from pricer.engines.transformers.loading import load_model

    loaded = load_model("default", bits=4, adapter=uninterrupted.out, device="cpu")
    try:
        assert loaded.info.adapter_sha256 is not None and loaded.info.name.endswith("+" + uninterrupted.out.name)
        [prediction] = LLMPredictor(loaded, batch_size=1, progress=False).predict(_items()[:1])
    finally:
        loaded.close()
    assert prediction.parsed, prediction.completion
