"""Per-product aspect vectors in memory: exact scans and re-ranking of search candidates.

A product photo is described by several *aspects* besides its CNN embedding: colour
histogram, texture, silhouette shape, surface pattern (:mod:`vitrine.vision.features`) and
colour layout (:mod:`vitrine.vision.layout`). Any one of them is a weak cue, but photos of
one product agree on all of them at once, and products that differ only in small details
(same cut and colour) are told apart by the ones the embedding blurs. :class:`AspectStore`
keeps those vectors as float32 matrices (one per kind) keyed by product id, and

* :meth:`AspectStore.scan` scores the whole catalogue exactly on a few cheap aspects (a
  second candidate source beside the embedding's ANN search: it finds the near-duplicates
  that the embedding ranks low);
* :meth:`AspectStore.rerank` scores a short list of candidates on every aspect and orders
  them by the fused score.

Shared snapshot
    :meth:`AspectStore.export` hands out the live rows and :meth:`AspectStore.attach`
    serves matrices mapped from a snapshot file (:mod:`vitrine.index.aspect_snapshot`,
    float16, copy-on-write): every process reads the same page-cache pages, and a change
    made after the snapshot lands in this process's private copy of the pages it touches
    (new products take the file's spare rows; past them the store grows into memory).

Concurrency
    Mutations and reads take one lock; a scan holds it for one matrix-vector product per
    aspect (a few milliseconds at 35k products), a rerank only while it gathers rows.

The weights and the fusion of per-aspect similarities live in :mod:`vitrine.index.fusion`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vitrine.index.fusion import DEFAULT_WEIGHTS, EMBEDDING, fuse
from vitrine.index.vector_index import Hit

__all__ = ["AspectStore"]

_INITIAL_CAPACITY = 1024


# -- store ----------------------------------------------------------------------------


class _Kind:
    """One aspect's rows: a growable matrix plus which rows hold a vector."""

    __slots__ = ("dim", "matrix", "present")

    def __init__(self, dim: int, capacity: int) -> None:
        self.dim = dim
        self.matrix = np.zeros((capacity, dim), np.float32)
        self.present = np.zeros(capacity, bool)

    def grow(self, capacity: int) -> None:
        matrix = np.zeros((capacity, self.dim), np.float32)
        matrix[: len(self.matrix)] = self.matrix
        present = np.zeros(capacity, bool)
        present[: len(self.present)] = self.present
        self.matrix, self.present = matrix, present


def _is_query_aspect(q: object) -> bool:
    # Duck typing: isinstance() against a runtime-checkable Protocol costs ~50 us a call.
    return not isinstance(q, np.ndarray) and callable(getattr(q, "similarity", None))


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.where(norms > 1e-12, matrix / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


class AspectStore:
    """Thread-safe in-memory aspect vectors per product id (float32, rows unit-L2).

    Args:
        dims: expected dimension per kind; kinds not listed take the dimension of their
            first upsert, after which a different dimension is an error.
    """

    def __init__(self, dims: Mapping[str, int] | None = None) -> None:
        self._lock = threading.RLock()
        self._capacity = _INITIAL_CAPACITY
        self._dims: dict[str, int] = dict(dims or {})
        self._kinds: dict[str, _Kind] = {}
        self._ids: list[str | None] = []  # row -> product id (None = free)
        self._alive = np.zeros(self._capacity, bool)  # row holds a product
        self._pos: dict[str, int] = {}
        self._free: list[int] = []

    # -- introspection ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pos)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._pos

    def __repr__(self) -> str:
        kinds = ", ".join(f"{k}={v.dim}" for k, v in self._kinds.items())
        return f"AspectStore(count={len(self._pos)}, kinds=[{kinds}])"

    @property
    def kinds(self) -> dict[str, int]:
        """Stored kinds and their dimensions."""
        with self._lock:
            return {k: v.dim for k, v in self._kinds.items()}

    def ids(self) -> list[str]:
        with self._lock:
            return [pid for pid in self._ids if pid is not None]

    def get(self, product_id: str) -> dict[str, np.ndarray]:
        """Copies of the stored vectors of a product by kind (empty if unknown)."""
        with self._lock:
            row = self._pos.get(product_id)
            if row is None:
                return {}
            return {
                k: v.matrix[row].astype(np.float32)
                for k, v in self._kinds.items()
                if v.present[row]
            }

    # -- snapshot ---------------------------------------------------------------------

    def export(self) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """The live products, per kind the stored (matrix, presence) arrays themselves, and
        the row of each product in them: valid while no change runs (the caller holds
        changes back, e.g. while it writes a snapshot)."""
        with self._lock:
            rows = np.flatnonzero(self._alive[: len(self._ids)])
            ids = [self._ids[int(r)] for r in rows]
            kinds = {kind: (state.matrix, state.present) for kind, state in self._kinds.items()}
            return ids, kinds, rows  # type: ignore[return-value]

    def attach(
        self, ids: Sequence[str], kinds: Mapping[str, tuple[np.ndarray, np.ndarray]]
    ) -> None:
        """Serve these rows from now on, in place of everything held: ``kinds[kind]`` is a
        (capacity x dim matrix, capacity presence) pair, rows past ``len(ids)`` free and
        zero. The matrices are used as given (a snapshot's copy-on-write maps, rows unit-L2
        already); later changes write into them."""
        capacity = min((len(m) for m, _ in kinds.values()), default=len(ids))
        if capacity < len(ids) or len(set(ids)) != len(ids):
            raise ValueError("attach needs unique ids and a row for each of them")
        with self._lock:
            self._kinds = {}
            for kind, (matrix, present) in kinds.items():
                expected = self._dims.get(kind)
                if expected is not None and matrix.shape[1] != expected:
                    raise ValueError(f"aspect {kind!r} has dimension {expected}")
                state = _Kind.__new__(_Kind)
                state.dim, state.matrix = int(matrix.shape[1]), matrix[:capacity]
                state.present = np.asarray(present[:capacity], bool)
                self._kinds[kind] = state
                self._dims.setdefault(kind, state.dim)
            self._capacity = max(capacity, 1)
            self._ids = list(ids)
            self._pos = {pid: row for row, pid in enumerate(self._ids)}
            self._alive = np.zeros(self._capacity, bool)
            self._alive[: len(self._ids)] = True
            self._free = []

    def rows(
        self, kinds: Sequence[str], ids: Sequence[str] | None = None
    ) -> tuple[list[str], dict[str, np.ndarray]]:
        """The stored products (of ``ids``, when given) and their rows of ``kinds``, one
        matrix per kind in the order of the ids returned (a zero row where a product lacks a
        kind; an unknown kind is a matrix of zeros of width 0)."""
        with self._lock:
            if ids is None:
                n = len(self._ids)
                picked = np.flatnonzero(self._alive[:n])
            else:
                picked = np.array(
                    [self._pos[pid] for pid in dict.fromkeys(ids) if pid in self._pos], np.int64
                )
            out_ids = [self._ids[int(r)] for r in picked]
            out: dict[str, np.ndarray] = {}
            for kind in kinds:
                state = self._kinds.get(kind)
                if state is None:
                    out[kind] = np.zeros((len(picked), self._dims.get(kind, 0)), np.float32)
                    continue
                matrix = state.matrix[picked].astype(np.float32)
                matrix[~state.present[picked]] = 0.0
                out[kind] = matrix
            return out_ids, out  # type: ignore[return-value]

    # -- mutation ---------------------------------------------------------------------

    def upsert(
        self, ids: Sequence[str], aspects: Mapping[str, np.ndarray], *, replace: bool = True
    ) -> None:
        """Set the aspects of products: ``aspects[kind]`` is an ``len(ids) x dim`` matrix.

        With ``replace`` (a product's new photo) its vectors become exactly those given:
        kinds not given are dropped for it. Without (loading kind by kind at start), the
        given kinds are set and its other kinds are kept. Rows are stored unit-L2 (all-zero
        rows stay zero); a row with NaN or inf is an error. Duplicate ids in one call: the
        last occurrence wins.
        """
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of product ids, not one str")
        ids_list = list(ids)
        for pid in ids_list:
            if not isinstance(pid, str):
                raise TypeError(f"product ids must be str, got {type(pid).__name__}: {pid!r}")
        prepared: dict[str, np.ndarray] = {}
        for kind, matrix in aspects.items():
            m = np.asarray(matrix, dtype=np.float32)
            if m.ndim == 1 and len(ids_list) == 1:
                m = m[None, :]
            if m.ndim != 2 or m.shape[0] != len(ids_list):
                raise ValueError(
                    f"aspect {kind!r}: expected {len(ids_list)} rows, got shape {m.shape}"
                )
            expected = self._dims.get(kind)
            if expected is not None and m.shape[1] != expected:
                raise ValueError(f"aspect {kind!r} has dimension {expected}, got {m.shape[1]}")
            if not np.isfinite(m).all():
                raise ValueError(f"aspect {kind!r} has NaN or infinite values")
            prepared[kind] = _unit_rows(m)
        if not ids_list:
            return
        last = {pid: i for i, pid in enumerate(ids_list)}
        keep = sorted(last.values())
        with self._lock:
            for kind, m in prepared.items():
                self._dims.setdefault(kind, m.shape[1])
            rows = np.array([self._row_for(ids_list[i]) for i in keep], dtype=np.int64)
            for kind, state in self._kinds.items():
                if replace and kind not in prepared:
                    state.present[rows] = False
            for kind, m in prepared.items():
                state = self._kinds.get(kind)
                if state is None:
                    state = self._kinds[kind] = _Kind(m.shape[1], self._capacity)
                state.matrix[rows] = m[keep]
                state.present[rows] = True

    def _row_for(self, product_id: str) -> int:
        row = self._pos.get(product_id)
        if row is not None:
            return row
        if self._free:
            row = self._free.pop()
            self._ids[row] = product_id
        else:
            row = len(self._ids)
            if row >= self._capacity:
                self._capacity = max(2 * self._capacity, row + 1)
                for state in self._kinds.values():
                    state.grow(self._capacity)
                alive = np.zeros(self._capacity, bool)
                alive[: len(self._alive)] = self._alive
                self._alive = alive
            self._ids.append(product_id)
        self._pos[product_id] = row
        self._alive[row] = True
        return row

    def remove(self, ids: Iterable[str]) -> int:
        """Forget products; returns how many were present."""
        if isinstance(ids, str):
            raise TypeError("ids must be an iterable of product ids, not one str")
        with self._lock:
            rows = [self._pos.pop(pid) for pid in set(ids) if pid in self._pos]
            for row in rows:
                self._ids[row] = None
                self._alive[row] = False
                for state in self._kinds.values():
                    state.present[row] = False
                    state.matrix[row] = 0.0
            self._free.extend(rows)
            return len(rows)

    # -- queries ----------------------------------------------------------------------

    def scan(
        self,
        query_aspects: Mapping[str, Any],
        weights: Mapping[str, float],
        k: int = 50,
        *,
        allowed: Collection[str] | None = None,
        exclude: Collection[str] = (),
    ) -> list[Hit]:
        """The ``k`` products with the highest weighted sum of cosines, exact, over all.

        Only plain vector query aspects take part (1-D, or 2-D: best row); a product
        missing a kind scores 0 on it. The score is the weighted *mean* cosine.
        """
        if k <= 0:
            return []
        terms = [
            (kind, float(w), np.asarray(query_aspects[kind], dtype=np.float32))
            for kind, w in weights.items()
            if w > 0 and kind in query_aspects and isinstance(query_aspects[kind], np.ndarray)
        ]
        if not terms:
            raise ValueError("scan needs a plain vector query aspect with a positive weight")
        weight_sum = sum(w for _, w, _ in terms)
        with self._lock:
            n = len(self._ids)
            if n == 0:
                return []
            total = np.zeros(n, np.float32)
            for kind, w, q in terms:
                state = self._kinds.get(kind)
                if state is None:
                    continue
                if q.shape[-1] != state.dim:
                    raise ValueError(
                        f"query aspect {kind!r} has dimension {q.shape[-1]}, stored {state.dim}"
                    )
                sims = state.matrix[:n] @ _unit_rows(np.atleast_2d(q)).T
                total += np.float32(w) * sims.max(axis=1)
            valid = self._alive[:n].copy()
            if allowed is not None:
                mask = np.zeros(n, bool)
                mask[[self._pos[p] for p in allowed if p in self._pos]] = True
                valid &= mask
            for pid in exclude:
                row = self._pos.get(pid)
                if row is not None:
                    valid[row] = False
            rows = np.flatnonzero(valid)
            if len(rows) == 0:
                return []
            scores = total[rows]
            part = np.argpartition(-scores, k - 1)[:k] if len(rows) > k else np.arange(len(rows))
            order = part[np.lexsort((rows[part], -scores[part]))]
            return [
                Hit(self._ids[int(rows[i])], float(scores[i]) / weight_sum)  # type: ignore[arg-type]
                for i in order
            ]

    def similarities(
        self, query_aspects: Mapping[str, Any], product_ids: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Per-aspect similarity of each product to the query (NaN where it lacks the kind)."""
        out: dict[str, np.ndarray] = {}
        with self._lock:
            rows = np.array([self._pos.get(pid, -1) for pid in product_ids], dtype=np.int64)
            gathered: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for name, q in query_aspects.items():
                kind = q.kind if _is_query_aspect(q) else name
                state = self._kinds.get(kind)
                if state is None or kind in gathered:
                    continue
                ok = rows >= 0
                have = np.zeros(len(rows), bool)
                have[ok] = state.present[rows[ok]]
                picked = state.matrix[np.where(have, rows, 0)]
                gathered[kind] = (picked.astype(np.float32, copy=False), have)
        for name, q in query_aspects.items():
            kind = q.kind if _is_query_aspect(q) else name
            if kind not in gathered:
                out[name] = np.full(len(product_ids), np.nan)
                continue
            matrix, have = gathered[kind]
            if _is_query_aspect(q):
                sims = np.asarray(q.similarity(matrix[have]), dtype=np.float64)
            else:
                qv = np.asarray(q, dtype=np.float32)
                if qv.shape[-1] != matrix.shape[1]:
                    raise ValueError(
                        f"query aspect {name!r} has dimension {qv.shape[-1]}, "
                        f"stored {matrix.shape[1]}"
                    )
                qv = _unit_rows(np.atleast_2d(qv))
                sims = (matrix[have] @ qv.T).max(axis=1).astype(np.float64)
            full = np.full(len(product_ids), np.nan)
            full[have] = sims
            out[name] = full
        return out

    def rerank(
        self,
        query_aspects: Mapping[str, Any],
        query_embedding: np.ndarray | None,
        candidates: Sequence[Hit],
        weights: Mapping[str, float] = DEFAULT_WEIGHTS,
        k: int = 10,
        *,
        candidate_embeddings: np.ndarray | Callable[[Sequence[str]], np.ndarray] | None = None,
    ) -> list[Hit]:
        """Order ``candidates`` by the fused similarity of all weighted aspects; the best ``k``.

        The ``"embedding"`` aspect is the cosine of ``query_embedding`` (1-D, or one row per
        query view: the best counts) with ``candidate_embeddings`` (one row per candidate as
        passed, or a function of the de-duplicated candidate ids returning their rows; a zero
        row means unknown); without
        them, each candidate's own ``Hit.score`` is taken as its embedding similarity.
        Weights of aspects the query does not provide are ignored. Duplicate candidates
        keep their first occurrence; ties keep the candidates' order.
        """
        if k <= 0 or not candidates:
            return []
        first: dict[str, int] = {}
        for i, hit in enumerate(candidates):
            first.setdefault(hit.product_id, i)
        keep = list(first.values())
        unique = [candidates[i] for i in keep]
        ids = [h.product_id for h in unique]
        if isinstance(candidate_embeddings, np.ndarray):
            if len(candidate_embeddings) != len(candidates):
                raise ValueError(
                    f"{len(candidates)} candidates but {len(candidate_embeddings)} embeddings"
                )
            candidate_embeddings = candidate_embeddings[keep]
        wanted = {name: q for name, q in query_aspects.items() if weights.get(name, 0.0) > 0}
        sims = self.similarities(wanted, ids)
        if weights.get(EMBEDDING, 0.0) > 0:
            sims[EMBEDDING] = self._embedding_similarity(
                unique, query_embedding, candidate_embeddings
            )
        fused = fuse(sims, weights)
        order = np.lexsort((np.arange(len(unique)), -fused))[:k]
        return [Hit(ids[i], float(fused[i])) for i in order if np.isfinite(fused[i])]

    @staticmethod
    def _embedding_similarity(
        hits: Sequence[Hit],
        query_embedding: np.ndarray | None,
        candidate_embeddings: np.ndarray | Callable[[Sequence[str]], np.ndarray] | None,
    ) -> np.ndarray:
        if candidate_embeddings is None or query_embedding is None:
            return np.array([h.score for h in hits], np.float64)
        if callable(candidate_embeddings):
            matrix = np.asarray(candidate_embeddings([h.product_id for h in hits]))
        else:
            matrix = np.asarray(candidate_embeddings)
        matrix = matrix.astype(np.float32, copy=False)
        if matrix.shape[0] != len(hits):
            raise ValueError(f"{len(hits)} candidates but {matrix.shape[0]} embeddings")
        q = _unit_rows(np.atleast_2d(np.asarray(query_embedding, dtype=np.float32)))
        known = np.abs(matrix).sum(axis=1) > 0
        sims = (_unit_rows(matrix) @ q.T).max(axis=1).astype(np.float64)
        return np.where(known, sims, np.nan)
