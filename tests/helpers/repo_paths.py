"""Where the tests find the repository, their fixtures and the shared data beside the checkout, from any test folder."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
SHARED_EVAL = REPO.parent / "shared" / "data" / "eval"
# the project SFT sample (huatuogpt_o1_demo_sft.jsonl); a git worktree has no ../shared beside it
SHARED_TRAIN = Path(os.environ.get("M1_HARNESS_TRAIN_DATA") or REPO.parent / "shared" / "data" / "train")
