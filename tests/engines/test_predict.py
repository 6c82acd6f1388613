"""predict: batched greedy generation at every width, deterministic and equal to the course's one-at-a-time way."""

from __future__ import annotations

import json
import logging
import warnings

import pytest

from pricer.engines.predict import (DEFAULT_MAX_NEW_TOKENS, DecodingPolicy, LLMPredictor, Prediction,
                                    default_token_budget, predict_one_at_a_time, token_budget_batches)
from pricer.engines.transformers.cache import ModelCache
from pricer.engines.widths import BITS
from pricer.errors import OptionError
from pricer.task.items import DataSpec, Item
from pricer.task.load import load_items
from pricer.task.prompts import COURSE_TEMPLATE

# Two short prompts in the course's layout: enough to exercise padding (their lengths differ) in a fraction of a second.
ITEMS = [
    Item(index=1, price=24.99, title="Stainless steel garlic press",
         prompt=COURSE_TEMPLATE.format(title="Stainless steel garlic press",
                                       description="Heavy duty kitchen garlic crusher with easy-clean design.")),
    Item(index=2, price=189.0, title="Cordless drill driver kit",
         prompt=COURSE_TEMPLATE.format(title="Cordless drill driver kit",
                                       description="20V lithium-ion drill with two batteries, charger and a "
                                                   "carrying case; 1/2 inch keyless chuck, two speeds, LED light.")),
]


# Tiny prompts run fastest on one thread: see one_torch_thread in conftest.py.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_items(data_dir) -> list[Item]:
    """The first four test items of the course's data, from $PRICER_DATA."""
    return load_items(DataSpec(source=str(data_dir), n=4))


@pytest.mark.parametrize("bits", BITS, ids=[f"{b}bit" for b in BITS])
def test_every_width_predicts_a_parsed_price_per_item_in_order(model_cache, bits):
    predictions = LLMPredictor(model_cache.get(bits=bits), progress=False).predict(ITEMS)
    assert len(predictions) == len(ITEMS)
    for prediction in predictions:
        assert isinstance(prediction, Prediction) and isinstance(prediction.completion, str)
        assert prediction.parsed and prediction.guess > 0, prediction


@pytest.mark.parametrize("bits", [4, 8], ids=["4bit", "8bit"])
def test_batch_prediction_is_deterministic(model_cache, bits):
    predictor = LLMPredictor(model_cache.get(bits=bits), progress=False)
    assert predictor.predict(ITEMS) == predictor.predict(ITEMS)


def test_batched_32bit_predictions_equal_the_course_one_at_a_time(model_cache, data_items):
    loaded = model_cache.get(bits=32)
    batched = LLMPredictor(loaded, batch_size=len(data_items), progress=False).predict(data_items)
    assert batched == predict_one_at_a_time(loaded, data_items, progress=False)


def test_completion_holds_only_new_tokens_and_stops_at_max_new_tokens(model_cache):
    loaded = model_cache.get(bits=32)
    completions = LLMPredictor(loaded, max_new_tokens=3, progress=False).complete([item.prompt for item in ITEMS])
    for completion in completions:
        assert "Price is $" not in completion
        assert len(loaded.tokenizer(completion, add_special_tokens=False)["input_ids"]) <= 3


def test_unparsable_completion_gives_guess_zero_and_parsed_false(model_cache, monkeypatch):
    predictor = LLMPredictor(model_cache.get(bits=32), progress=False)
    monkeypatch.setattr(predictor, "complete", lambda prompts: ["about a hundred", "1,299.99 dollars"])
    assert predictor.predict(ITEMS) == [
        Prediction(guess=0.0, completion="about a hundred", parsed=False),
        Prediction(guess=1299.99, completion="1,299.99 dollars", parsed=True),
    ]


def test_greedy_generation_warns_about_no_sampling_flags(model_cache, caplog):
    predictor = LLMPredictor(model_cache.get(bits=32), progress=False)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        predictor.predict(ITEMS[:1])
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "temperature" in m or "top_p" in m or "generation flags" in m], messages


def test_8bit_prediction_silences_the_int8_cast_warning_only_while_predicting(model_cache, caplog):
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    predictor = LLMPredictor(model_cache.get(bits=8), progress=False)
    with caplog.at_level(logging.WARNING):
        predictor.predict(ITEMS[:1])
    assert not [r for r in caplog.records if "MatMul8bitLt" in r.getMessage()]
    assert logger.filters == []  # the filter is scoped to prediction, not left installed


def test_a_batch_size_records_greedy_left_padded_batches_in_input_order(model_cache):
    predictor = LLMPredictor(model_cache.get(bits=32), batch_size=4, progress=False)
    assert predictor.policy == DecodingPolicy(batch_size=4, max_new_tokens=DEFAULT_MAX_NEW_TOKENS)
    policy = json.loads(json.dumps(predictor.policy.to_dict()))
    assert policy["order"] == "input" and policy["padding"] == "left"
    assert policy["do_sample"] is False and policy["chat_template"] is False


def test_predictor_is_named_by_model_and_width(model_cache):
    assert LLMPredictor(model_cache.get(bits=4), progress=False).name == "smollm2-135m-instruct 4bit"


def test_progress_bar_is_hidden_when_asked(model_cache, capsys):
    LLMPredictor(model_cache.get(bits=32), progress=False).predict(ITEMS[:1])
    assert capsys.readouterr().err == ""


def test_token_budget_batches_put_longest_prompts_first_and_never_exceed_the_budget():
    lengths = [153, 239, 194, 200, 160, 239, 500]
    batches = token_budget_batches(lengths, 600)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))  # every prompt exactly once
    assert batches[0] == [6]  # longer than the budget: alone
    for batch in batches:
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
        assert len(batch) == 1 or len(batch) * lengths[batch[0]] <= 600
    assert batches[1] == [1, 5]  # equal lengths keep input order


def test_token_budget_completions_come_back_in_input_order(model_cache, data_items):
    loaded = model_cache.get(bits=32)
    budget = LLMPredictor(loaded, token_budget=1, progress=False)  # one prompt per batch, longest first
    assert budget.policy.order == "length" and budget.policy.batch_size is None
    assert [b for batch in budget.batches([i.prompt for i in data_items]) for b in batch] != list(range(len(data_items)))
    assert budget.predict(data_items) == predict_one_at_a_time(loaded, data_items, progress=False)


def test_default_policy_is_the_devices_token_budget(model_cache):
    predictor = LLMPredictor(model_cache.get(bits=32), progress=False)
    assert predictor.policy.token_budget == default_token_budget(predictor.loaded.info.device)
    assert default_token_budget("cuda:0") > default_token_budget("cpu")


def test_a_recorded_batching_is_reproduced_from_a_baselines_context():
    old = DecodingPolicy.batching_from({"batch_size": 8, "order": "input"}, max_new_tokens=8)
    new = DecodingPolicy.batching_from({"batch_size": None, "token_budget": 1536, "order": "length"}, max_new_tokens=8)
    assert (old.batch_size, old.token_budget, old.order) == (8, None, "input")
    assert (new.batch_size, new.token_budget, new.order) == (None, 1536, "length")
    assert DecodingPolicy.batching_from({}, max_new_tokens=8) is None


@pytest.mark.parametrize("option", [{"batch_size": 0}, {"token_budget": 0}, {"max_new_tokens": 0}])
def test_non_positive_batch_size_or_token_count_is_an_option_error(model_cache, option):
    with pytest.raises(OptionError, match=r"is not a positive integer"):
        LLMPredictor(model_cache.get(bits=32), **option)


def test_no_items_give_no_predictions(model_cache):
    assert LLMPredictor(model_cache.get(bits=32), progress=False).predict([]) == []


@pytest.mark.gpu
def test_batched_4bit_on_cuda_is_deterministic():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cache = ModelCache()
    try:
        predictor = LLMPredictor(cache.get(bits=4, device="cuda"), progress=False)
        assert predictor.predict(ITEMS) == predictor.predict(ITEMS)
    finally:
        cache.clear()
