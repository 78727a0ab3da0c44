"""The near-duplicate threshold is a measurement: it must still be what the calibration picks, and it must
catch ordinary copies (re-encodes, format changes, resizes, brightness) while distinct pictures stay apart."""
import io

import numpy as np
import pytest
from PIL import Image

from fullstack_ml.near_duplicates import (NEAR_DUPLICATE_SIMILARITY, NearDuplicates, choose_similarity, image_hashes,
                                          measure_near_duplicates, near_duplicate_table)


@pytest.fixture(scope="module")
def measured():
    return measure_near_duplicates()


def test_the_constant_is_what_the_calibration_chooses(measured):
    assert choose_similarity(measured) == NEAR_DUPLICATE_SIMILARITY
    assert (measured["distinct"] >= NEAR_DUPLICATE_SIMILARITY).mean() <= 1e-4


@pytest.mark.parametrize("change,at_least", [
    ("JPEG quality 90", 100), ("JPEG quality 70", 100), ("JPEG quality 50", 100), ("JPEG quality 30", 98),
    ("WebP (lossy)", 99), ("JPEG, then PNG again", 100), ("half size (JPEG)", 100), ("double size (JPEG)", 100),
    ("darker 15%", 100), ("contrast 80%", 100), ("brighter 10%", 97), ("crop 4%", 90)])
def test_ordinary_copies_are_caught(measured, change, at_least):
    caught = near_duplicate_table(measured)[f"similarity ≥ {NEAR_DUPLICATE_SIMILARITY:g}"]
    assert caught[change] >= at_least


def test_the_old_pHash_rule_missed_what_the_new_one_catches(measured):
    table = near_duplicate_table(measured)
    old, new = table["pHash-256 ≤ 8 bits (before)"], table[f"similarity ≥ {NEAR_DUPLICATE_SIMILARITY:g}"]
    assert old["WebP (lossy)"] < 80 and old["half size (JPEG)"] < 50  # the leak the issue reported
    assert (new >= old).drop("distinct pictures (false positives)").all()


def test_index_rejects_a_key_of_the_wrong_kind():
    near = NearDuplicates()
    near.add(image_hashes(Image.radial_gradient("L"))["signature"], "g")
    with pytest.raises(ValueError, match="255 bytes"):
        near.find("ab" * 32)  # a 256-bit pHash is not a signature


def test_distinct_digits_stay_apart_and_their_copies_join():
    from sklearn.datasets import load_digits
    digits = load_digits().images[:60]
    near = NearDuplicates()
    for i, image in enumerate(digits):
        picture = Image.fromarray(np.kron((255 - image * 255 / 16).astype(np.uint8), np.ones((8, 8), np.uint8)))
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=50)
        signature = image_hashes(picture)["signature"]
        copy = image_hashes(Image.open(buffer))["signature"]
        assert near.find(signature) is None, i  # no earlier digit is taken for this one
        near.add(signature, str(i))
        assert near.find(copy) == str(i)
