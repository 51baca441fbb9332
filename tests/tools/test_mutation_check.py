"""The mutation list of benchmarks/mutation_check.py stays applicable to the current code.

Running the mutations is minutes of parity tests (done by hand, results in the parity README);
this cheap check makes a refactor that moves a mutated line fail here instead of silently
turning the mutation stale."""

import shutil
from pathlib import Path

import pytest

from benchmarks.mutation_check import MUTATIONS, ROOT, apply


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_mutation_applies_exactly_once_and_changes_the_file(mutation, tmp_path):
    src = ROOT / mutation.path
    dst = tmp_path / mutation.path
    dst.parent.mkdir(parents=True)
    shutil.copy2(src, dst)
    assert apply(tmp_path, mutation) is None
    assert dst.read_text() != src.read_text()


def test_at_least_five_mutations_over_both_backends():
    assert len(MUTATIONS) >= 5
    assert {Path(m.path).parts[0] for m in MUTATIONS} >= {"reppo_jax", "reppo_torch"}
