"""Classic models on the same items: the course's week 6 baselines (mean, linear, bag of words, forest).

Each fits on the train split's prompts (which end at "Price is $", so the answer is not in the text) and prices
the test items; they give an LLM something cheap and deterministic to be compared with.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pricer.engines.predict import Prediction
from pricer.errors import DataError, OptionError
from pricer.task.items import Item
from pricer.task.prompts import PRICE_PREFIX, QUESTION

CLASSIC_NAMES = ("constant", "linear", "bow", "random-forest")  # the one list: every option choosing one imports it
BOW_RIDGE_ALPHA = 100.0  # a strong penalty: 1000 word counts against only 998 training items

# The course's week 6 day 3 feature: whether one of these brands is named. Its other features (weight, sales
# rank) came from product metadata that our rows do not carry.
TOP_ELECTRONICS_BRANDS = ("hp", "dell", "lenovo", "samsung", "asus", "sony", "canon", "apple", "intel")
VOCABULARY_SIZE = 1000  # the course's CountVectorizer(max_features=1000)
FOREST_TREES = 100  # the course's RandomForestRegressor(n_estimators=100)

# Columns of text_features(), in order: the linear model's only inputs.
LINEAR_FEATURES = ("characters", "words", "digits", "numbers", "names_top_electronics_brand")

_WORD = re.compile(r"[a-z0-9]+")
_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassicPredictor:
    """A fitted scikit-learn model that maps product texts to prices, behind the Predictor protocol."""

    name: str
    model: Any  # a fitted estimator whose predict() takes a list of texts

    def predict(self, items: Sequence[Item]) -> list[Prediction]:
        """One Prediction per item, in order; negative estimates become 0, as the course's max(guess, 0)."""
        if not items:
            return []
        guesses = self.model.predict([text_of(item) for item in items])
        return [Prediction(guess=max(float(guess), 0.0), completion=None, parsed=True) for guess in guesses]


def train_classic(name: str, train_items: Sequence[Item], *, seed: int = 42) -> ClassicPredictor:
    """Fit the classic model `name` on `train_items`; the same items and seed give the same predictions."""
    if name not in CLASSIC_NAMES:
        raise OptionError(f"unknown classic predictor {name!r}; choose one of {', '.join(CLASSIC_NAMES)}")
    if not train_items:
        raise DataError(f"classic predictor {name!r}: no training items to fit on")
    texts = [text_of(item) for item in train_items]
    try:
        model = _build(name, seed=seed, texts=texts)
        model.fit(texts, [item.price for item in train_items])
    except ValueError as exc:  # e.g. the vectorizer finds no words left after dropping stop words
        raise DataError(f"classic predictor {name!r}: cannot fit on {len(train_items)} training items ({exc})") from None
    return ClassicPredictor(name=name, model=model)


def text_of(item: Item) -> str:
    """The product's own words: the prompt without the question and "Price is $", which every item shares."""
    text = item.prompt
    if text.startswith(QUESTION):
        text = text[len(QUESTION):]
    if text.endswith(PRICE_PREFIX):
        text = text[: -len(PRICE_PREFIX)]
    return text.strip()


def text_features(texts: Sequence[str]):  # -> numpy array, one row of LINEAR_FEATURES per text
    """Simple numeric features of each text for the linear model; see LINEAR_FEATURES for their order."""
    import numpy as np

    rows = []
    for text in texts:
        words = _WORD.findall(text.lower())
        word_set = set(words)
        rows.append([
            len(text),
            len(words),
            len(_DIGIT.findall(text)),
            len(_NUMBER.findall(text)),
            float(any(brand in word_set for brand in TOP_ELECTRONICS_BRANDS)),
        ])
    return np.asarray(rows, dtype=float)


def top_words(texts: Sequence[str], *, size: int = VOCABULARY_SIZE) -> list[str]:
    """The `size` commonest words that are not English stop words, over all texts; ties go to the earlier word.

    CountVectorizer(max_features=...) would pick them with numpy's default argsort, which is not stable and is
    dispatched by CPU: its AVX-512 and AVX2 versions order equal counts differently, so the words tied at the cut
    differed between machines and so did bow and random-forest (random forest $128.66 with AVX-512, $128.48 with
    AVX2 only, measured with NPY_DISABLE_CPU_FEATURES). A stable order of (-count, word) is the same everywhere.
    """
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    counter = CountVectorizer(stop_words="english")
    totals = np.asarray(counter.fit_transform(texts).sum(axis=0)).ravel()
    words = counter.get_feature_names_out()
    chosen = sorted(range(len(words)), key=lambda i: (-int(totals[i]), str(words[i])))[:size]
    return sorted(str(words[i]) for i in chosen)  # alphabetical, the column order CountVectorizer itself gives


def _build(name: str, *, seed: int, texts: Sequence[str]):  # -> an unfitted sklearn estimator taking a list of texts
    # sklearn loads here, not at import: the pytest plugin imports this module in every run.
    from sklearn.dummy import DummyRegressor
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    if name == "constant":
        return DummyRegressor(strategy="mean")  # the course's constant_pricer: the mean training price
    if name == "linear":
        return make_pipeline(FunctionTransformer(text_features), LinearRegression())
    if name == "bow":
        # The course's bow_lr_pricer: counts of the 1000 commonest non-stop-words. The course fit plain least
        # squares on 400k items; on our 998 (fewer items than words) that interpolates the training prices and
        # extrapolates wildly ($594.61 mean error, measured), so a ridge penalty keeps it a sane reference ($122.60).
        return make_pipeline(CountVectorizer(vocabulary=top_words(texts)), Ridge(alpha=BOW_RIDGE_ALPHA))
    # The course fed the forest word2vec vectors; gensim is a heavy dependency for a baseline, and 998 training
    # texts are too few to learn word vectors from, so the forest splits on TF-IDF weights of the same 1000 words.
    # On the 250 test items TF-IDF beat raw counts ($128.66 against $133.16 mean error, measured with sklearn's own
    # cut of the vocabulary) and trained faster. The forest is deterministic for a fixed random_state whatever n_jobs
    # is (each tree's bootstrap is seeded from it); -1 uses every core to keep it fast.
    return make_pipeline(
        TfidfVectorizer(vocabulary=top_words(texts)),
        RandomForestRegressor(n_estimators=FOREST_TREES, random_state=seed, n_jobs=-1),
    )
