"""Exact single-row evaluators for the estimators our training produces, so a cached model answers one row in
tens to hundreds of microseconds instead of the milliseconds scikit-learn's ``predict_proba`` spends on input
validation, feature-name checks and (for HistGradientBoosting) waking its OpenMP thread pool per call.

They are *compiled* once from the fitted estimator when a version is loaded, and give the same probabilities as
``estimator.predict_proba`` (same arithmetic in the same order; the tests compare them on many rows including
missing values and values exactly on split thresholds). What they cannot reproduce exactly they refuse: the
builder returns None with the reason logged, and the service keeps using scikit-learn for that version.

Supported:
    ``Pipeline(StandardScaler, LogisticRegression)``      :class:`LinearFastPath`
    ``HistGradientBoostingClassifier`` (numeric features, binary log-loss or multinomial), optionally behind
    ``StandardScaler`` steps of a ``Pipeline``               :class:`TreeEnsembleFastPath`
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

logger = logging.getLogger(__name__)


class FastPathRefused(ValueError):
    """The estimator has a form the fast evaluators do not reproduce exactly (scikit-learn is used instead)."""


class LinearFastPath:
    """``Pipeline(StandardScaler, LogisticRegression)`` evaluated with plain numpy (the same arithmetic as
    scikit-learn's predict_proba, without its per-call validation): tens of microseconds per row."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.mean, self.scale, self.coef, self.intercept = mean, scale, coef, intercept

    @classmethod
    def of(cls, estimator: Any) -> LinearFastPath | None:
        steps = getattr(estimator, "steps", None)
        if not steps or len(steps) != 2:
            return None
        scaler, clf = steps[0][1], steps[1][1]
        if not (isinstance(scaler, StandardScaler) and isinstance(clf, LogisticRegression)):
            return None
        mean = scaler.mean_ if scaler.with_mean else np.zeros(clf.coef_.shape[1])
        scale = scaler.scale_ if scaler.with_std else np.ones(clf.coef_.shape[1])
        return cls(np.asarray(mean), np.asarray(scale), np.asarray(clf.coef_), np.asarray(clf.intercept_))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = ((X - self.mean) / self.scale) @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:  # binary: sigmoid of the one decision function
            p = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.column_stack((1.0 - p, p))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True))


class _Scaling:
    """One fitted ``StandardScaler`` step: ``(x - mean) / scale`` as its transform computes it."""

    def __init__(self, scaler: StandardScaler, n_features: int) -> None:
        self.mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else None
        self.scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else None
        for arr in (self.mean, self.scale):
            if arr is not None and arr.shape != (n_features,):
                raise FastPathRefused(f"scaler fitted on {arr.shape} features, the model on {n_features}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.mean is not None:
            x = x - self.mean
        if self.scale is not None:
            x = x / self.scale
        return x


_Tree = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]


def _breadth_first(nodes: np.ndarray, n_features: int) -> _Tree:
    """One tree's node records renumbered so that each split's two children are adjacent (left, then right):
    (feature, threshold, missing goes right, first child, value, depth)."""
    if np.any(nodes["is_categorical"]):
        raise FastPathRefused("a tree splits on a categorical feature")
    n = len(nodes)
    new_of = np.full(n, -1, dtype=np.intp)
    old_of = [0]
    new_of[0] = 0
    child = np.zeros(n, dtype=np.intp)
    depth = np.zeros(n, dtype=np.intp)
    i = 0
    while i < len(old_of):
        old = old_of[i]
        if nodes["is_leaf"][old]:
            child[i] = i
        else:
            left, right = int(nodes["left"][old]), int(nodes["right"][old])
            if new_of[left] >= 0 or new_of[right] >= 0:
                raise FastPathRefused("a tree's nodes do not form a tree")
            child[i] = len(old_of)
            for kid in (left, right):
                new_of[kid] = len(old_of)
                old_of.append(kid)
                depth[new_of[kid]] = depth[i] + 1
        i += 1
    if len(old_of) != n:
        raise FastPathRefused("a tree has unreachable nodes")
    ordered = nodes[np.asarray(old_of, dtype=np.intp)]
    leaf = ordered["is_leaf"].astype(bool)
    feature = np.where(leaf, 0, ordered["feature_idx"]).astype(np.intp)
    if n and (feature.max() >= n_features or feature.min() < 0):
        raise FastPathRefused("a node splits on a feature index outside the model's inputs")
    threshold = np.where(leaf, np.inf, ordered["num_threshold"]).astype(np.float64)
    missing_right = ~leaf & ~ordered["missing_go_to_left"].astype(bool)
    return feature, threshold, missing_right, child, ordered["value"].astype(np.float64), int(depth.max())


class TreeEnsembleFastPath:
    """A fitted ``HistGradientBoostingClassifier`` compiled to flat node arrays and evaluated for one row by
    walking every tree at once, one tree level per numpy step (so the cost is depth x a few array operations,
    not trees x depth Python steps).

    Layout: each tree's nodes are renumbered breadth-first so that a node's right child directly follows its
    left child (``child[n] + went_right``); a leaf is its own child with threshold +inf and "missing goes
    left", so once reached it stays.

    Exactness, step by step against scikit-learn 1.x (``_predictor.pyx``, ``gradient_boosting._raw_predict``,
    ``_loss``):
      * routing: NaN goes where the node's ``missing_go_to_left`` says, otherwise left iff
        ``x <= num_threshold`` (so a value exactly on a threshold goes left; +-inf compare as numbers);
      * raw score of class k: ``0 + baseline[k]``, then each iteration's tree value added in iteration order (a
        sequential cumulative sum, not numpy's pairwise sum);
      * probabilities: binary -> ``[1 - expit(raw), expit(raw)]``; multiclass -> softmax with the row maximum
        subtracted first, as ``sklearn.utils.extmath.softmax``.
    """

    def __init__(
        self,
        *,
        n_features: int,
        n_classes: int,
        baseline: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        missing_right: np.ndarray,
        child: np.ndarray,
        value: np.ndarray,
        roots: np.ndarray,
        depth: int,
        scalings: tuple[_Scaling, ...] = (),
    ) -> None:
        self.n_features = n_features
        self.n_classes = n_classes
        self.baseline = baseline
        self.feature, self.threshold, self.missing_right = feature, threshold, missing_right
        self.child, self.value = child, value
        self.roots = roots  # iteration-major: tree k of iteration i at i * n_trees_per_iteration + k
        self.depth = depth  # of the deepest tree: steps that bring every tree to its leaf
        self.scalings = scalings
        self.n_trees_per_iteration = 1 if n_classes == 2 else n_classes

    @classmethod
    def compile(cls, estimator: Any) -> TreeEnsembleFastPath:
        """Compile a fitted model (raises FastPathRefused when it has a form this evaluator does not cover)."""
        scalings: list[_Scaling] = []
        steps = getattr(estimator, "steps", None)
        model = estimator
        if steps is not None:
            *head, (_, model) = steps
            n_in = getattr(model, "n_features_in_", None)
            for name, step in head:
                if not isinstance(step, StandardScaler) or n_in is None:
                    raise FastPathRefused(f"pipeline step {name!r} ({type(step).__name__}) is not a StandardScaler")
                scalings.append(_Scaling(step, int(n_in)))
        if not isinstance(model, HistGradientBoostingClassifier):
            raise FastPathRefused(f"{type(model).__name__} is not a HistGradientBoostingClassifier")
        if getattr(model, "_preprocessor", None) is not None or getattr(model, "is_categorical_", None) is not None:
            raise FastPathRefused("categorical features are not supported")
        loss = type(model._loss).__name__
        n_classes = len(model.classes_)
        per_iteration = int(model.n_trees_per_iteration_)
        binary = loss == "HalfBinomialLoss" and per_iteration == 1 and n_classes == 2
        multiclass = loss == "HalfMultinomialLoss" and per_iteration == n_classes >= 3
        if not (binary or multiclass):
            raise FastPathRefused(f"loss {loss} with {n_classes} classes / {per_iteration} trees per iteration")
        n_features = int(model.n_features_in_)

        trees = []  # per tree, iteration-major: (feature, threshold, missing_right, child, value, depth)
        for iteration in model._predictors:
            if len(iteration) != per_iteration:
                raise FastPathRefused("an iteration holds the wrong number of trees")
            for predictor in iteration:
                trees.append(_breadth_first(predictor.nodes, n_features))
        parts: list[list[np.ndarray]] = [[], [], [], [], []]
        roots = np.empty(len(trees), dtype=np.intp)
        offset = 0
        for position, (feature, threshold, missing_right, child, value, _) in enumerate(trees):
            roots[position] = offset
            for part, array in zip(parts, (feature, threshold, missing_right, child + offset, value), strict=True):
                part.append(array)
            offset += len(feature)
        joined = [np.concatenate(p) if p else np.zeros(0) for p in parts]
        baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
        if baseline.shape != (per_iteration,):
            raise FastPathRefused(f"baseline of shape {baseline.shape} for {per_iteration} trees per iteration")
        return cls(
            n_features=n_features,
            n_classes=n_classes,
            baseline=baseline,
            feature=joined[0].astype(np.intp),
            threshold=joined[1].astype(np.float64),
            missing_right=joined[2].astype(bool),
            child=joined[3].astype(np.int32) if offset < 2**31 else joined[3].astype(np.intp),
            value=joined[4].astype(np.float64),
            roots=roots,
            depth=max((t[5] for t in trees), default=0),
            scalings=tuple(scalings),
        )

    @classmethod
    def of(cls, estimator: Any) -> TreeEnsembleFastPath | None:
        """The compiled model, or None (logged) when it is not a supported gradient-boosting model."""
        model = estimator.steps[-1][1] if getattr(estimator, "steps", None) else estimator
        if not isinstance(model, HistGradientBoostingClassifier):
            return None
        try:
            return cls.compile(estimator)
        except FastPathRefused as exc:
            logger.info("no fast path for this model; scikit-learn predicts", extra={"reason": str(exc)})
            return None

    def raw_one(self, x: np.ndarray) -> np.ndarray:
        """Raw scores (one per tree of an iteration) of one feature row (1-D, already scaled).

        Every node's direction for this row is computed at once (one gather of the row by the nodes' features,
        one comparison), giving each node's next node; then all trees step together, one level per step."""
        right = x.take(self.feature) > self.threshold
        nan_row = np.isnan(x)
        if nan_row.any():
            right |= nan_row.take(self.feature) & self.missing_right
        step = self.child + right
        node = self.roots
        for _ in range(self.depth):
            node = step.take(node)
        leaves = self.value.take(node).reshape(-1, self.n_trees_per_iteration)
        # 0 + baseline, then each iteration's trees in order (cumsum is sequential; sum may be pairwise).
        return np.asarray(np.cumsum(np.vstack((self.baseline, leaves)), axis=0)[-1])

    def proba_one(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of one row (1-D, in the model's feature order), as predict_proba's row."""
        for scaling in self.scalings:
            x = scaling(x)
        raw = self.raw_one(x)
        if self.n_classes == 2:
            p = float(expit(raw[0]))
            return np.array([1.0 - p, p])
        shifted = raw - raw.max()
        e = np.exp(shifted)
        return np.asarray(e / e.sum())

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Row by row (meant for one or a handful of rows; batches go to scikit-learn)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {X.shape}")
        return np.vstack([self.proba_one(row) for row in X]) if len(X) else np.zeros((0, self.n_classes))
