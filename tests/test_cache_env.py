"""A cache root that cannot hold a folder (M1_HARNESS_CACHE set to a file, or below one) is one
sentence naming the variable, before any model loads (it was a NotADirectoryError traceback from
lm_eval --model m1_budget)."""

import pytest

from m1_harness.paths import CACHE_ENV, OutputError, cache_dir


@pytest.mark.parametrize("below", ["", "sub"])
def test_a_cache_root_that_is_a_file_is_one_sentence(tmp_path, monkeypatch, below):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    root = blocker / below if below else blocker
    monkeypatch.setenv(CACHE_ENV, str(root))
    with pytest.raises(OutputError) as err:
        cache_dir("traces")
    assert str(err.value) == (
        f"M1_HARNESS_CACHE={str(root)!r}: the cache folder {str(root / 'traces')!r} cannot be created "
        "(Not a directory): set M1_HARNESS_CACHE to a folder you can write to (default ~/.cache/m1_harness)"
    )


def test_a_good_cache_root_is_created(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "new"))
    assert cache_dir("traces") == tmp_path / "new" / "traces"
    assert (tmp_path / "new" / "traces").is_dir()
