"""Near-duplicate search at 200K-item scale: MinHash LSH candidates, exact rapidfuzz verification.

The decision rule is exactly m1's: two questions are duplicates when rapidfuzz ``fuzz.ratio`` of
their normalised texts is ``>= threshold`` (95). Comparing every pair is quadratic, so candidate
pairs come from locality-sensitive hashing and only candidates are scored:

1. texts are normalised (``items.normalise``) and exact duplicates of the normalised text are
   collapsed first (they score 100 with each other and identically with everything else);
2. character ``k``-gram shingles (k=5) are hashed with a vectorised rolling hash (numpy);
3. one-permutation MinHash (``num_perm`` bins, rotation densification for empty bins) gives each
   text a signature; ``bands`` x ``rows`` LSH buckets give candidate pairs;
4. every candidate pair is verified with ``fuzz.ratio(..., score_cutoff=threshold)``.

Verification makes every reported pair exact (no false positives). Recall is probabilistic: a
pair with shingle Jaccard J becomes a candidate with probability ``1 - (1 - J**rows)**bands``.
With the defaults (128 bins, 21 bands of 6 rows) that is 0.93 at J = 0.7, 0.998 at J = 0.8 and
>0.99999 at J >= 0.85. Pairs at ratio >= 95 differ by at most 5% of their characters; typical
near-duplicates (punctuation, a word or a few typos) have J > 0.8, but a pair at the very edge of
the threshold with its edits spread evenly can fall to J ~ 0.6 (recall ~0.6 for that pair): more
bands (``bands``/``rows``/``num_perm`` are stage parameters) trade time for recall there. An exact
length bound drops candidates that cannot reach the threshold before scoring. The tests check that
the result equals exact pairwise comparison on real items with edits on both sides of the
threshold; ``method: exact`` is the quadratic reference, for small inputs.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_BASE = np.uint64(1099511628211)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised (uint64 arithmetic wraps)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


def _shingles_chunk(texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(owner index, 64-bit hash) of every character k-gram of every text in the chunk."""
    encoded = [t.encode("utf-8") for t in texts]
    lens = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.uint64)
    starts = np.concatenate(([0], np.cumsum(lens)[:-1])) if len(lens) else np.zeros(0, np.int64)
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    eff_k = k
    nwin = total - eff_k + 1
    h = np.zeros(max(nwin, 0), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(eff_k):
            h = h * _BASE + buf[j : j + nwin]
    owner_of_pos = np.repeat(np.arange(len(texts)), lens)
    ends = starts + lens
    # window starting at p is inside its text when p + k <= end of that text
    pos = np.arange(nwin)
    owner = owner_of_pos[:nwin]
    valid = pos + eff_k <= ends[owner]
    owner, h = owner[valid], h[valid]
    # texts shorter than k: one shingle, the whole text
    short = np.nonzero(lens < eff_k)[0]
    if len(short):
        sh = np.array(
            [int.from_bytes(encoded[i][:8].ljust(8, b"\0"), "little") ^ len(encoded[i]) for i in short], dtype=np.uint64
        )
        owner = np.concatenate((owner, short))
        h = np.concatenate((h, sh))
    return owner, _mix(h)


def signatures(texts: list[str], *, k: int = 5, num_perm: int = 128, chunk: int = 4096, seed: int = 1) -> np.ndarray:
    """One-permutation MinHash signatures, shape (len(texts), num_perm), uint32."""
    if num_perm & (num_perm - 1):
        raise ValueError("num_perm must be a power of two")
    bits = int(np.log2(num_perm))
    salt = _mix(np.array([seed], dtype=np.uint64))[0]
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    empty = np.uint64(0xFFFFFFFF)
    for lo in range(0, len(texts), chunk):
        part = texts[lo : lo + chunk]
        owner, h = _shingles_chunk(part, k)
        h = _mix(h ^ salt)
        bins = (h >> np.uint64(64 - bits)).astype(np.int64) if bits else np.zeros(len(h), np.int64)
        vals = (h & np.uint64(0xFFFFFFFE)) >> np.uint64(1)  # < 2**31: leaves room for the empty marker
        sig = np.full((len(part), num_perm), empty, dtype=np.uint64)
        flat = sig.reshape(-1)
        np.minimum.at(flat, owner * num_perm + bins, vals)
        sig = _densify(sig, empty)
        out[lo : lo + len(part)] = sig.astype(np.uint32)
    return out


def _densify(sig: np.ndarray, empty: np.uint64) -> np.ndarray:
    """Rotation densification: an empty bin takes the next non-empty bin's value (circularly),
    offset by the distance, so that two texts agree on it only when they agree on that bin."""
    n, m = sig.shape
    is_empty = sig == empty
    if not is_empty.any():
        return sig
    doubled = np.concatenate((sig, sig), axis=1)
    idx = np.where(np.concatenate((~is_empty, ~is_empty), axis=1), np.arange(2 * m), 2 * m)
    nxt = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1][:, :m]
    all_empty = nxt >= 2 * m
    nxt = np.minimum(nxt, 2 * m - 1)
    filled = np.take_along_axis(doubled, nxt, axis=1)
    dist = (nxt - np.arange(m)).astype(np.uint64)
    with np.errstate(over="ignore"):
        filled = np.where(is_empty, (filled + dist * np.uint64(0x9E3779B1)) & np.uint64(0x7FFFFFFF), sig)
    filled[all_empty] = 0
    return filled


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64 bucket keys."""
    n, m = sig.shape
    if bands * rows > m:
        raise ValueError(f"bands * rows = {bands * rows} exceeds num_perm = {m}")
    keys = np.zeros((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(rows):
            col = sig[:, r : bands * rows : rows].astype(np.uint64)
            keys = _mix(keys * np.uint64(0x100000001B3) + col + np.uint64(r + 1))
    return keys


def candidate_pairs(sig: np.ndarray, bands: int, rows: int, max_bucket: int = 5000) -> tuple[np.ndarray, int]:
    """Unique (i, j), i < j, that share a bucket in any band; and the number of oversized buckets
    (more than ``max_bucket`` members: their pairs are still generated, it is only counted)."""
    keys = band_keys(sig, bands, rows)
    n = len(sig)
    chunks: list[np.ndarray] = []
    pending = 0
    oversized = 0
    for b in range(bands):
        col = keys[:, b]
        order = np.argsort(col, kind="stable")
        sorted_keys = col[order]
        starts = np.concatenate(([0], np.nonzero(np.diff(sorted_keys))[0] + 1))
        sizes = np.diff(np.concatenate((starts, [n])))
        two = starts[sizes == 2]  # most shared buckets hold two texts: vectorised
        if len(two):
            a, c = order[two].astype(np.int64), order[two + 1].astype(np.int64)
            chunks.append(np.minimum(a, c) * n + np.maximum(a, c))
        for s, size in zip(starts[sizes > 2].tolist(), sizes[sizes > 2].tolist()):
            members = np.sort(order[s : s + size]).astype(np.int64)
            if size > max_bucket:
                oversized += 1
            ii, jj = np.triu_indices(size, k=1)
            chunks.append(members[ii] * n + members[jj])
        pending += sum(len(c) for c in chunks[-1:])
        if pending > 5_000_000:
            chunks = [np.unique(np.concatenate(chunks))]
            pending = len(chunks[0])
    if not chunks:
        return np.zeros((0, 2), dtype=np.int64), oversized
    enc = np.unique(np.concatenate(chunks))
    return np.stack((enc // n, enc % n), axis=1), oversized


def length_filter(pairs: np.ndarray, lens_a: np.ndarray, lens_b: np.ndarray, threshold: float) -> np.ndarray:
    """Drop pairs that cannot reach ``threshold``: ``fuzz.ratio`` <= 200 * min(len) / (len_a + len_b)
    (an exact bound, so no true pair is lost)."""
    if len(pairs) == 0:
        return pairs
    a, b = lens_a[pairs[:, 0]], lens_b[pairs[:, 1]]
    bound = 200.0 * np.minimum(a, b) / np.maximum(a + b, 1)
    return pairs[bound >= threshold - 1e-9]


def cross_candidates(sig_a: np.ndarray, sig_b: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Unique (i in a, j in b) sharing a bucket in any band."""
    ka, kb = band_keys(sig_a, bands, rows), band_keys(sig_b, bands, rows)
    nb = len(sig_b)
    out = []
    for b in range(bands):
        index: dict[int, list[int]] = defaultdict(list)
        for j, key in enumerate(kb[:, b].tolist()):
            index[key].append(j)
        hits = np.nonzero(np.isin(ka[:, b], kb[:, b]))[0]
        col = ka[:, b]
        for i in hits.tolist():
            for j in index[int(col[i])]:
                out.append(i * nb + j)
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    enc = np.unique(np.array(out, dtype=np.int64))
    return np.stack((enc // nb, enc % nb), axis=1)


def exact_groups(texts: list[str]) -> tuple[list[int], np.ndarray]:
    """Representatives (first occurrence of each distinct text) and, per text, its representative."""
    first: dict[str, int] = {}
    rep = np.empty(len(texts), dtype=np.int64)
    reps = []
    for i, t in enumerate(texts):
        r = first.setdefault(t, i)
        if r == i:
            reps.append(i)
        rep[i] = r
    return reps, rep


def verify(pairs, texts_a, texts_b, threshold: float) -> list[tuple[int, int, float]]:
    """Pairs whose ``fuzz.ratio`` is >= threshold, with the score."""
    from rapidfuzz import fuzz

    ratio = fuzz.ratio
    out = []
    for i, j in pairs.tolist() if hasattr(pairs, "tolist") else pairs:
        s = ratio(texts_a[i], texts_b[j], score_cutoff=threshold)
        if s >= threshold and s > 0:
            out.append((i, j, s))
        elif threshold <= 0:
            out.append((i, j, s))
    return out


def greedy_keep(n: int, edges: list[tuple[int, int, float]]) -> dict[int, tuple[int, float]]:
    """The first-come rule: walking in order, an item is a duplicate when it matches an earlier
    item that was kept. Returns {dropped index: (kept index it duplicates, score)}."""
    earlier: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for i, j, s in edges:
        a, b = (i, j) if i < j else (j, i)
        earlier[b].append((a, s))
    dropped: dict[int, tuple[int, float]] = {}
    for j in sorted(earlier):
        kept = [(a, s) for a, s in earlier[j] if a not in dropped]
        if kept:
            dropped[j] = min(kept)  # the earliest kept match
    return dropped


def find_duplicates(
    texts: list[str],
    *,
    threshold: float = 95.0,
    k: int = 5,
    num_perm: int = 128,
    bands: int = 21,
    rows: int = 6,
    method: str = "lsh",
) -> tuple[dict[int, tuple[int, float]], dict]:
    """{dropped index: (kept index, score)} under the first-come rule, and statistics."""
    reps, rep_of = exact_groups(texts)
    rep_texts = [texts[i] for i in reps]
    stats = {
        "items": len(texts),
        "distinct_texts": len(reps),
        "method": method,
        "num_perm": num_perm,
        "bands": bands,
        "rows": rows,
        "shingle": k,
    }
    if method == "exact":
        edges = exact_pairs(rep_texts, rep_texts, threshold, same=True)
        stats["candidate_pairs"] = len(rep_texts) * (len(rep_texts) - 1) // 2
    elif method == "lsh":
        sig = signatures(rep_texts, k=k, num_perm=num_perm)
        pairs, oversized = candidate_pairs(sig, bands, rows)
        stats["candidate_pairs"] = int(len(pairs))
        stats["oversized_buckets"] = oversized
        lens = np.fromiter((len(t) for t in rep_texts), dtype=np.int64, count=len(rep_texts))
        pairs = length_filter(pairs, lens, lens, threshold)
        stats["after_length_filter"] = int(len(pairs))
        edges = verify(pairs, rep_texts, rep_texts, threshold)
    else:
        raise ValueError(f"method must be 'lsh' or 'exact', got {method!r}")
    stats["verified_pairs"] = len(edges)
    dropped_reps = greedy_keep(len(rep_texts), edges)
    dropped: dict[int, tuple[int, float]] = {}
    for r_pos, (k_pos, s) in dropped_reps.items():
        dropped[reps[r_pos]] = (reps[k_pos], s)
    for i in range(len(texts)):
        r = int(rep_of[i])
        if r != i:  # an exact copy: same fate as its representative, matched to a kept item
            dropped[i] = dropped.get(r, (r, 100.0)) if r in dropped else (r, 100.0)
    return dropped, stats


def exact_pairs(texts_a, texts_b, threshold: float, *, same: bool = False) -> list[tuple[int, int, float]]:
    """The quadratic reference: every pair (i < j when ``same``) with ratio >= threshold."""
    from rapidfuzz import fuzz, process

    if not texts_a or not texts_b:
        return []
    m = process.cdist(texts_a, texts_b, scorer=fuzz.ratio, score_cutoff=threshold, dtype=np.float64, workers=1)
    ii, jj = np.nonzero(m >= max(threshold, 1e-9))
    out = []
    for i, j in zip(ii.tolist(), jj.tolist()):
        if same and i >= j:
            continue
        out.append((i, j, float(m[i, j])))
    return out
