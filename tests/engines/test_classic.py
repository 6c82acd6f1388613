"""Tests of pricer.engines.classic: the course's classic predictors trained on item texts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pricer.engines.classic import CLASSIC_NAMES, LINEAR_FEATURES, text_features, text_of, top_words, train_classic
from pricer.errors import DataError, OptionError
from pricer.task.items import DataSpec, Item
from pricer.task.load import load_items
from pricer.task.prompts import PRICE_PREFIX, QUESTION


def _item(index: int, body: str, price: float) -> Item:
    prompt = f"{QUESTION}\n\n{body}\n\n{PRICE_PREFIX}"
    return Item(index=index, prompt=prompt, price=price, title=body.split("\n", 1)[0])


# Cheap things and dear things, told apart by their words, so a text model has something to learn.
TRAIN = [
    _item(1, "Cotton socks\nSoft cotton socks, pack of three", 6.0),
    _item(2, "Wool socks\nWarm wool socks for winter", 9.0),
    _item(3, "Gaming laptop\nFast laptop with a 15.6 inch screen and 32GB memory", 1400.0),
    _item(4, "Business laptop\nLight laptop with long battery life and 16GB memory", 900.0),
    _item(5, "Sports socks\nCushioned socks for running", 8.0),
    _item(6, "Student laptop\nAffordable laptop with 8GB memory", 450.0),
]
TEST = [
    _item(1, "Hiking socks\nThick socks for boots", 12.0),
    _item(2, "Travel laptop\nThin laptop with 16GB memory", 1000.0),
]


def test_constant_predicts_mean_training_price():
    predictor = train_classic("constant", TRAIN)
    mean = sum(item.price for item in TRAIN) / len(TRAIN)
    assert [p.guess for p in predictor.predict(TEST)] == pytest.approx([mean, mean])


@pytest.mark.parametrize("name", CLASSIC_NAMES)
def test_each_classic_predictor_returns_one_unparsed_text_free_prediction_per_item(name):
    predictor = train_classic(name, TRAIN)
    predictions = predictor.predict(TEST)
    assert predictor.name == name
    assert len(predictions) == len(TEST)
    assert all(p.completion is None and p.parsed and p.guess >= 0 for p in predictions)
    assert predictor.predict([]) == []


@pytest.mark.parametrize("name", ["bow", "random-forest"])
def test_text_models_price_items_by_their_words(name):
    socks, laptop = (p.guess for p in train_classic(name, TRAIN).predict(TEST))
    assert laptop > socks + 100


def test_random_forest_predictions_are_deterministic():
    first = [p.guess for p in train_classic("random-forest", TRAIN, seed=7).predict(TEST)]
    second = [p.guess for p in train_classic("random-forest", TRAIN, seed=7).predict(TEST)]
    assert first == second


def test_negative_estimates_are_clipped_to_zero():
    # Price falls steeply with text length here, so a long text extrapolates below zero.
    train = [_item(n, "word " * n, 1000.0 - 100.0 * n) for n in range(1, 9)]
    long_text = [_item(1, "word " * 40, 1.0)]
    predictor = train_classic("linear", train)
    assert predictor.model.predict([text_of(long_text[0])])[0] < 0  # the raw model does go negative
    assert predictor.predict(long_text)[0].guess == 0.0


def test_unknown_predictor_name_is_rejected():
    with pytest.raises(OptionError, match="'forest'") as caught:
        train_classic("forest", TRAIN)
    for name in CLASSIC_NAMES:
        assert name in str(caught.value)


def test_training_without_items_is_rejected():
    with pytest.raises(DataError, match="no training items"):
        train_classic("linear", [])


def test_models_see_the_product_text_without_the_shared_question_and_answer_prefix():
    text = text_of(TRAIN[0])
    assert text == "Cotton socks\nSoft cotton socks, pack of three"
    assert QUESTION not in text and PRICE_PREFIX not in text


def test_linear_features_count_length_words_digits_numbers_and_brands():
    text = "Dell laptop 15.6 inch"
    features = dict(zip(LINEAR_FEATURES, text_features([text])[0]))
    assert features == {
        "characters": len(text),
        "words": 5,  # "15.6" splits into "15" and "6"
        "digits": 3,
        "numbers": 1,
        "names_top_electronics_brand": 1.0,
    }
    assert text_features(["Handel biography"])[0][LINEAR_FEATURES.index("names_top_electronics_brand")] == 0.0


def test_importing_the_module_does_not_load_sklearn():
    # The pytest plugin imports pricer modules in every run; sklearn costs about a second to import.
    code = "import sys, pricer.engines.classic; print('sklearn' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# That the forest beats the constant on the real test items is checked in tests/test_readme.py, from the run of the
# docs' commands, so that the forest is trained once per test session.


def test_vocabulary_ties_go_to_the_alphabetically_earlier_word():
    texts = ["zebra mango apple", "kiwi laptop laptop"]  # laptop twice, the others once each
    assert top_words(texts, size=3) == ["apple", "kiwi", "laptop"]


# Prints the bow vocabulary trained on the real train split, read without `datasets` to keep the run short.
_VOCABULARY_SCRIPT = """
import json, sys
from pricer.engines.classic import train_classic
from pricer.task.items import Item
from pricer.task.prompts import prompt_of
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
items = [Item(index=i, prompt=prompt_of(r["text"]), price=float(r["price"]), title="") for i, r in enumerate(rows, 1)]
print(json.dumps(sorted(train_classic("bow", items).model[0].vocabulary_)))
"""
# numpy's AVX-512 sort; disabling it makes this machine sort as an AVX2-only one does.
_AVX512 = ("AVX512_SKX", "AVX512_ICL", "AVX512_SPR", "X86_V4")


def test_text_vocabulary_is_the_same_whichever_sort_the_cpu_gives_numpy(data_dir):
    from numpy._core._multiarray_umath import __cpu_features__

    present = [name for name in _AVX512 if __cpu_features__.get(name)]
    if not present:
        pytest.skip("this CPU has no AVX-512: numpy sorts the same way in both runs")
    train = load_items(DataSpec(source=str(data_dir), split="train", n=None))
    here = sorted(train_classic("bow", train).model[0].vocabulary_)
    avx2 = subprocess.run([sys.executable, "-c", _VOCABULARY_SCRIPT, str(data_dir / "train.jsonl")],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(present)}).stdout
    assert len(here) == 1000
    assert json.loads(avx2) == here
