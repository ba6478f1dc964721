"""Leakage-free splitting: group augmented variants of one photo, then split whole groups.

Roboflow exports one source photo several times (flips, rotations, colour jitter) under names
`<source>_jpg.rf.<hash>.jpg`. A split by image puts the same wall in train and test, so
`group_sources` joins rows that share a source id or look alike (perceptual hash, compared
under all eight flips/rotations), and `group_split` assigns whole groups to train/val/test.
`export_leakage` measures how much an export's own train/valid/test split leaks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image, ImageOps

SPLITS = ("train", "val", "test")
EXPORT_SPLIT_ORDER = ("train", "valid", "test")

# The eight symmetries of a square: identity plus Pillow's seven transposes.
_DIHEDRAL = (
    None,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)


def _require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} needs columns {missing}, which are missing; present: {list(df.columns)}"
        )


class _UnionFind:
    """Disjoint sets over 0..n-1 with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]


def image_phashes(path: str | Path, hash_size: int = 16, dihedral: bool = False) -> np.ndarray:
    """Perceptual hash of an image as a bool array (1, hash_size**2), or (8, ...) with the
    hashes of its 7 flips/rotations appended when `dihedral` is True.

    The image is decoded as a small grayscale thumbnail (JPEG draft mode) and resized once to
    the hash's working size; flips and rotations of that square commute with the resize.
    """
    side = hash_size * 4  # imagehash.phash's default highfreq_factor
    try:
        with Image.open(path) as im:
            im.draft("L", (side, side))
            im = ImageOps.exif_transpose(im)
            small = im.convert("L").resize((side, side), Image.Resampling.LANCZOS)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read image {path} for hashing: {exc}") from exc
    hashes = []
    for op in _DIHEDRAL if dihedral else _DIHEDRAL[:1]:
        variant = small if op is None else small.transpose(op)
        hashes.append(imagehash.phash(variant, hash_size=hash_size).hash.reshape(-1))
    return np.stack(hashes)


def _pack(bits: np.ndarray) -> np.ndarray:
    """Pack (..., n_bits) bools into (..., n_words) uint64 words."""
    packed = np.packbits(bits, axis=-1)
    pad = (-packed.shape[-1]) % 8
    if pad:
        packed = np.concatenate(
            [packed, np.zeros(packed.shape[:-1] + (pad,), dtype=np.uint8)], axis=-1
        )
    return np.ascontiguousarray(packed).view(np.uint64)


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Index pairs (i < j) whose hashes differ in at most `max_distance` bits.

    `hashes` is (N, T, n_bits): T hashes per image, the first of the image itself. The distance
    between images i and j is the smallest distance between i's own hash and any of j's T
    hashes, so flipped or rotated copies of a photo are found.
    """
    n = hashes.shape[0]
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    words = _pack(hashes)  # (N, T, W)
    own = words[:, 0, :]  # (N, W)
    pairs = []
    chunk = max(1, 2_000_000 // max(1, n * words.shape[1] * words.shape[2]))
    for start in range(0, n, chunk):
        block = own[start : start + chunk]  # (C, W)
        xor = block[:, None, None, :] ^ words[None, :, :, :]  # (C, N, T, W)
        dist = np.bitwise_count(xor).sum(axis=-1, dtype=np.int32).min(axis=-1)  # (C, N)
        ii, jj = np.nonzero(dist <= max_distance)
        ii = ii + start
        keep = ii != jj
        pairs.append(np.stack([np.minimum(ii, jj)[keep], np.maximum(ii, jj)[keep]], axis=1))
    out = np.concatenate(pairs)
    return np.unique(out, axis=0) if len(out) else out.reshape(0, 2)


def group_sources(
    df: pd.DataFrame,
    phash_distance: int | None = 12,
    hash_size: int = 16,
    dihedral: bool = False,
) -> pd.Series:
    """Group id per row: rows of one dataset sharing a source id or a near-identical picture.

    Two rows of the same dataset are joined when their `source_id` is equal, or (unless
    `phash_distance` is None) when their perceptual hashes differ in at most `phash_distance`
    of `hash_size**2` bits; with `dihedral=True` each image is also compared with all
    flips/rotations of the other. Joins are transitive (union-find). The group id is
    `<dataset>:<smallest source_id>`.

    Why these defaults: drywall photos are flat, low-texture walls, and a 64-bit hash
    (hash_size=8) puts unrelated walls within 2-6 bits of each other. On the real drywall
    export, 8 bits at distance 6 with flips chained 46 different photos into one group of 318
    images; 256 bits at distance 12 joins no two different photos there and still joins
    near-identical copies. Flip/rotation matching found almost no extra true variants
    (Roboflow's variants are also sheared and cropped) but several false ones, so it is off
    unless asked for.
    """
    _require_columns(df, ["image_path", "dataset", "source_id"], "group_sources")
    if phash_distance is not None and phash_distance < 0:
        raise ValueError(f"phash_distance must be >= 0 or None, got {phash_distance}")
    n = len(df)
    uf = _UnionFind(n)
    datasets = df["dataset"].astype(str).to_numpy()
    sources = df["source_id"].astype(str).to_numpy()

    first_of: dict[tuple[str, str], int] = {}
    for i, key in enumerate(zip(datasets, sources, strict=True)):
        if key in first_of:
            uf.union(first_of[key], i)
        else:
            first_of[key] = i

    if phash_distance is not None and n > 1:
        paths = df["image_path"].astype(str).to_numpy()
        for name in pd.unique(datasets):
            rows = np.flatnonzero(datasets == name)
            hashes = np.stack([image_phashes(paths[r], hash_size, dihedral) for r in rows])
            for a, b in near_duplicate_pairs(hashes, phash_distance):
                uf.union(int(rows[a]), int(rows[b]))

    roots = [uf.find(i) for i in range(n)]
    smallest: dict[int, str] = {}
    for root, source in zip(roots, sources, strict=True):
        if root not in smallest or source < smallest[root]:
            smallest[root] = source
    ids = [f"{datasets[r]}:{smallest[r]}" for r in roots]
    return pd.Series(ids, index=df.index, name="group_id", dtype=object)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3:
        raise ValueError(
            f"fractions must be three numbers (train, val, test), got {len(values)}: {fractions}"
        )
    if any(not math.isfinite(f) or f < 0 for f in values):
        raise ValueError(f"fractions must be finite and >= 0, got {fractions}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions} (sum {sum(values):.6g})")
    if values[0] == 0:
        raise ValueError(f"the train fraction must be > 0, got {fractions}")
    return values  # type: ignore[return-value]


def _assign_groups(
    sizes: pd.Series, fractions: tuple[float, float, float], rng: np.random.Generator
) -> dict[str, str]:
    """Greedy: biggest groups first (random order among equals), each to the neediest split."""
    order = rng.permutation(len(sizes))
    shuffled = sizes.iloc[order]
    shuffled = shuffled.sort_values(ascending=False, kind="stable")
    total = float(sizes.sum())
    active = [k for k, f in enumerate(fractions) if f > 0]
    targets = np.array([f * total for f in fractions])
    counts = np.zeros(3)
    out: dict[str, str] = {}
    for group, size in shuffled.items():
        deficits = [(targets[k] - counts[k], -k) for k in active]
        k = -max(deficits)[1]
        counts[k] += size
        out[group] = SPLITS[k]
    return out


def group_split(
    df: pd.DataFrame,
    seed: int = 42,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    stratify: str | None = "dataset",
    group_column: str = "group_id",
) -> pd.Series:
    """Split name ("train", "val" or "test") per row, keeping every group in one split.

    Each value of `stratify` (each dataset) is split on its own so each gets about `fractions`
    of its images. Groups are balanced by image count. The result depends only on `seed` and
    the data, not on the order of the rows.
    """
    fr = _check_fractions(fractions)
    needed = [group_column] + ([stratify] if stratify else [])
    if group_column not in df.columns:
        raise ValueError(
            f"group_split needs a '{group_column}' column; compute it with group_sources(df)"
        )
    _require_columns(df, needed, "group_split")
    if df[group_column].isna().any():
        raise ValueError(f"column '{group_column}' has missing values")

    strata = df[stratify].astype(str) if stratify else pd.Series("all", index=df.index)
    spans = df.groupby(group_column, sort=False)[stratify].nunique() if stratify else None
    if spans is not None and (spans > 1).any():
        bad = list(spans[spans > 1].index[:5])
        raise ValueError(f"groups span several values of '{stratify}': {bad}")

    result = pd.Series(index=df.index, dtype=object, name="split")
    for k, name in enumerate(sorted(strata.unique())):
        rows = strata == name
        sizes = df.loc[rows].groupby(group_column, sort=True).size()
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, k])
        assignment = _assign_groups(sizes, fr, rng)
        result[rows] = df.loc[rows, group_column].map(assignment)
    return result


def _export_order(values: Sequence[str]) -> list[str]:
    known = [s for s in EXPORT_SPLIT_ORDER if s in values]
    return known + sorted(s for s in values if s not in EXPORT_SPLIT_ORDER)


def export_leakage(df: pd.DataFrame) -> pd.DataFrame:
    """How much an export's own splits share source photos.

    One row per dataset, pair of export splits (a before b in train, valid, test order) and key
    (`source_id`, plus `group_id` when that column exists): `n_a`, `n_b` distinct keys in each,
    `n_shared` keys in both, `leak_fraction` = n_shared / n_b, the share of the evaluation split
    (b) whose photos also occur in a.
    """
    _require_columns(df, ["dataset", "source_split", "source_id"], "export_leakage")
    keys = ["source_id"] + (["group_id"] if "group_id" in df.columns else [])
    rows = []
    for name in sorted(df["dataset"].astype(str).unique()):
        sub = df[df["dataset"].astype(str) == name]
        order = _export_order(list(sub["source_split"].astype(str).unique()))
        for i, a in enumerate(order):
            for b in order[i + 1 :]:
                for key in keys:
                    set_a = set(sub.loc[sub["source_split"] == a, key].astype(str))
                    set_b = set(sub.loc[sub["source_split"] == b, key].astype(str))
                    shared = len(set_a & set_b)
                    rows.append(
                        {
                            "dataset": name,
                            "split_a": a,
                            "split_b": b,
                            "key": key,
                            "n_a": len(set_a),
                            "n_b": len(set_b),
                            "n_shared": shared,
                            "leak_fraction": shared / len(set_b) if set_b else 0.0,
                        }
                    )
    columns = ["dataset", "split_a", "split_b", "key", "n_a", "n_b", "n_shared", "leak_fraction"]
    return pd.DataFrame(rows, columns=columns)


SMALL_SPLIT = 20  # a split with fewer photos than this is too small to trust on its own


def split_sizes(
    manifest: pd.DataFrame, splits: Sequence[str] = ("train", "val", "test")
) -> pd.DataFrame:
    """Images and photos per split (rows) and class: columns ("images" | "photos", class).

    A photo is a near-duplicate group (`group_id`): an export's augmented copies of one photo
    are not independent test cases, so the photo count is the sample size a score rests on.
    """
    _require_columns(manifest, ["split", "dataset", "group_id"], "split_sizes")
    rows = manifest[manifest["split"].isin(splits)]
    by = rows.groupby(["split", "dataset"])
    out = pd.concat(
        {"images": by.size().unstack(fill_value=0),
         "photos": by["group_id"].nunique().unstack(fill_value=0)},
        axis=1,
    )
    return out.reindex([s for s in splits if s in out.index]).fillna(0).astype(int)
