"""The anomaly detector: an IsolationForest with a calibrated risk score and an alert threshold."""

from __future__ import annotations

from typing import Any, Self, TypeAlias

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator  # type: ignore[import-untyped]
from sklearn.ensemble import IsolationForest  # type: ignore[import-untyped]

# scikit-learn's own formula, imported rather than copied so that the compiled scorer
# adds exactly the numbers the forest's score_samples adds. The registry refuses a model
# saved with another scikit-learn, and the parity tests hold the two scorers together.
from sklearn.ensemble._iforest import _average_path_length  # type: ignore[import-untyped]
from sklearn.utils.validation import (  # type: ignore[import-untyped]
    check_is_fitted,
    validate_data,
)

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Rows walked through the forest at once: keeps the (rows x trees) work arrays within
# the CPU caches; measured fastest around 300 rows for 200 trees.
_ELEMENTS_PER_CHUNK = 1 << 16


class CompiledForest:
    """A fitted IsolationForest flattened into stacked numpy arrays, scored level by level.

    ``IsolationForest.score_samples`` walks its trees one by one in Python, a cost of
    milliseconds per call whatever the batch size. Here every tree advances one level per
    step for all rows at once, a handful of numpy operations per level, and the path
    lengths add up to scikit-learn's score: for each tree, the depth of the leaf reached
    plus the average path length of its training samples minus one, then
    ``-2 ** (-mean / c(max_samples_))``.

    Layout: the nodes of all trees share flat arrays; the trees' roots are nodes
    ``0 .. n_trees - 1`` and the two children of a split are neighbours, so one gather and
    one addition take a row to its child. A leaf is its own child and never goes right,
    which lets every row take the same number of steps.
    """

    __slots__ = ("_child", "_column", "_depth", "_path_length", "_scale", "_threshold", "_trees")

    def __init__(self, forest: IsolationForest) -> None:
        trees = [estimator.tree_ for estimator in forest.estimators_]
        # The forest's own rule: a tree sees a subset of the columns only when
        # max_features is below the feature count; with all of them it sees X as it is.
        subsampled = forest._max_features != forest.n_features_in_
        sizes = np.array([tree.node_count for tree in trees], dtype=np.intp)
        first_node = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.intp)
        node_offset = np.repeat(first_node, sizes)
        left = np.concatenate([tree.children_left for tree in trees])
        is_split = left >= 0
        splits = np.flatnonzero(is_split)
        right = np.concatenate([tree.children_right for tree in trees])

        # Renumber: the roots first, then the two children of each split side by side.
        renumbered = np.empty(len(left), dtype=np.intp)
        renumbered[first_node] = np.arange(len(trees))
        pair_start = len(trees) + 2 * np.arange(len(splits))
        renumbered[left[splits] + node_offset[splits]] = pair_start
        renumbered[right[splits] + node_offset[splits]] = pair_start + 1
        child = renumbered.copy()
        child[splits] = pair_start

        columns = []
        for tree, features in zip(trees, forest.estimators_features_, strict=True):
            column = np.where(tree.feature >= 0, tree.feature, 0)
            columns.append(np.asarray(features)[column] if subsampled else column)
        thresholds = np.concatenate([tree.threshold for tree in trees])
        path_lengths = np.concatenate(
            [
                tree.compute_node_depths() + _average_path_length(tree.n_node_samples) - 1.0
                for tree in trees
            ]
        )
        self._trees = len(trees)
        self._child = _renumbered(child, renumbered, np.intp)
        self._column = _renumbered(np.concatenate(columns), renumbered, np.intp)
        self._threshold = _renumbered(
            _float32_at_most(np.where(is_split, thresholds, np.inf)), renumbered, np.float32
        )
        self._path_length = _renumbered(path_lengths, renumbered, np.float64)
        self._depth = max(tree.max_depth for tree in trees)
        self._scale = len(trees) * float(_average_path_length([forest.max_samples_])[0])

    def score_samples(self, rows: FloatArray) -> FloatArray:
        """The forest's ``score_samples`` of finite rows: lower means more abnormal."""
        # The forest scores float32 copies of the rows; see _float32_at_most.
        values = np.ascontiguousarray(rows, dtype=np.float32)
        total = np.empty(len(values), dtype=np.float64)
        chunk = max(1, _ELEMENTS_PER_CHUNK // self._trees)
        for start in range(0, len(values), chunk):
            total[start : start + chunk] = self._summed_path_lengths(values[start : start + chunk])
        # scikit-learn's normalisation, including its answer for a one-sample forest.
        mean_ratio = np.divide(total, self._scale, out=np.ones_like(total), where=self._scale != 0)
        return np.asarray(-(2.0**-mean_ratio), dtype=np.float64)

    def _summed_path_lengths(self, values: npt.NDArray[np.float32]) -> FloatArray:
        rows, columns = values.shape
        flat = values.ravel()
        row_start = (np.arange(rows, dtype=np.intp) * columns)[:, None]
        node = np.tile(np.arange(self._trees, dtype=np.intp), (rows, 1))
        for _ in range(self._depth):
            # The trees' rule: x <= threshold goes left, to the first child of the pair.
            goes_right = np.take(flat, row_start + np.take(self._column, node)) > np.take(
                self._threshold, node
            )
            node = np.take(self._child, node) + goes_right
        return np.asarray(np.take(self._path_length, node).sum(axis=1), dtype=np.float64)


def _renumbered(
    values: npt.ArrayLike, new_index: npt.NDArray[np.intp], dtype: npt.DTypeLike
) -> npt.NDArray[Any]:
    placed: npt.NDArray[Any] = np.empty(len(new_index), dtype=dtype)
    placed[new_index] = values
    return placed


def _float32_at_most(thresholds: FloatArray) -> npt.NDArray[np.float32]:
    """The largest float32 at or below each threshold.

    The trees compare a float32 feature value with a float64 threshold; for a float32
    ``x``, ``x <= t`` holds exactly when ``x`` is at most the largest float32 not above
    ``t``, so the comparison can stay in float32 with the very same outcome.
    """
    with np.errstate(over="ignore"):
        nearest = thresholds.astype(np.float32)
    below = np.nextafter(nearest, np.float32(-np.inf))
    return np.where(nearest > thresholds, below, nearest).astype(np.float32)


class AnomalyDetector(BaseEstimator):
    """IsolationForest over behavioural features; ``risk_score`` in [0, 1], high means anomalous.

    The forest's raw score is calibrated by the empirical distribution of the training rows:
    ``risk_score(x)`` is the fraction of training rows that scored less anomalous than ``x``.
    ``threshold_`` is the risk above which ``target_alert_rate`` of the training rows alert.

    Directions, because they differ from scikit-learn's outlier detectors on purpose:

    - ``score_samples``: raw IsolationForest score, scikit-learn direction, lower = more abnormal;
    - ``risk_score``: in [0, 1], higher = riskier;
    - ``decision_function``: ``risk_score - threshold_``, positive = alert;
    - ``predict``: 1 = alert, 0 = normal.

    ``OutlierMixin`` is not used: it promises ``predict`` in {-1, +1} and a decision function
    that is negative for outliers, which scikit-learn tools would then misread.

    ``one_sided`` names features whose low side carries no risk (less activity than
    usual, an amount below the usual): values below 0 are raised to 0 before the forest
    sees them. An IsolationForest isolates both tails alike; without this, part of the
    alert budget goes to customers who are merely quieter than usual.

    Fit accepts a pandas DataFrame (its column names become ``feature_names_in_`` and are
    checked at every later call) or a 2-D array of finite numbers; ``one_sided`` needs
    the DataFrame's names.
    """

    def __init__(
        self,
        n_estimators: int = 200,
        max_samples: int | float | str = "auto",
        max_features: int | float = 1.0,
        random_state: int | np.random.RandomState | None = None,
        target_alert_rate: float = 0.005,
        n_jobs: int | None = None,
        one_sided: tuple[str, ...] = (),
    ) -> None:
        # scikit-learn convention: store hyperparameters untouched; fit validates them.
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.random_state = random_state
        self.target_alert_rate = target_alert_rate
        self.n_jobs = n_jobs
        self.one_sided = one_sided

    def fit(self, X: npt.ArrayLike, y: object = None) -> Self:
        """Fit the forest on the rows of X, calibrate the risk score and set ``threshold_``."""
        if not 0.0 <= self.target_alert_rate < 1.0:
            raise ValueError(f"target_alert_rate must be in [0, 1), got {self.target_alert_rate!r}")
        features = validate_data(self, X, reset=True, dtype=np.float64)
        names = list(getattr(self, "feature_names_in_", ()))
        unknown = [name for name in self.one_sided if name not in names]
        if unknown:
            raise ValueError(f"one_sided names features the data does not have: {unknown}")
        self.one_sided_columns_ = [names.index(name) for name in self.one_sided]
        features = self._floored(features)
        # Raw scores only: the forest's contamination offset plays no part in alerting.
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            contamination="auto",
            max_features=self.max_features,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        ).fit(features)
        self.compiled_forest_ = CompiledForest(self.forest_)
        # Scored by the compiled forest, as every later row will be, so that a row equal
        # to a training row ties with it exactly.
        self.training_scores_: FloatArray = np.sort(-self.compiled_forest_.score_samples(features))
        rows = len(self.training_scores_)
        training_risk = self._risk_from_anomaly(self.training_scores_)
        # Round down: the alert budget is a ceiling for the account managers' workload.
        # With no alert budget at all, only rows beyond the most anomalous training row alert.
        alerts = int(np.floor(self.target_alert_rate * rows))  # < rows, as the rate is < 1
        self.threshold_ = float(training_risk[rows - 1 - alerts])
        return self

    def score_samples(self, X: npt.ArrayLike) -> FloatArray:
        """Raw IsolationForest scores, scikit-learn direction: lower means more abnormal."""
        features = self._validated(X)  # first: it raises NotFittedError before fit
        return self.compiled_forest_.score_samples(features)

    def risk_score(self, X: npt.ArrayLike) -> FloatArray:
        """Risk in [0, 1], high means anomalous: the share of training rows scoring lower."""
        return self._risk_from_anomaly(-self.score_samples(X))

    def risk_score_rows(self, rows: FloatArray) -> FloatArray:
        """``risk_score`` of a float64 array whose columns are in the fitted order.

        The hot path of the worker: only the shape and finiteness are checked, not the
        feature names (the registry checks those when the model is loaded), which spares
        scikit-learn's input validation its fixed cost per call.
        """
        if not hasattr(self, "compiled_forest_"):
            check_is_fitted(self)  # raises NotFittedError
        if rows.ndim != 2 or rows.shape[1] != self.n_features_in_:
            raise ValueError(
                f"expected rows of {self.n_features_in_} features, got shape {rows.shape}"
            )
        if not np.isfinite(rows).all():
            raise ValueError("rows contain NaN or infinity")
        anomaly = -self.compiled_forest_.score_samples(self._floored(rows))
        return self._risk_from_anomaly(anomaly)

    def decision_function(self, X: npt.ArrayLike) -> FloatArray:
        """``risk_score - threshold_``: positive means the row alerts."""
        return self.risk_score(X) - self.threshold_

    def predict(self, X: npt.ArrayLike) -> IntArray:
        """1 where the row alerts (risk above ``threshold_``), 0 where it is normal."""
        return (self.decision_function(X) > 0.0).astype(np.int64)

    def __getstate__(self) -> dict[str, Any]:
        # The compiled arrays derive from forest_: the pickle keeps one source of truth
        # and its size, and loading rebuilds them (a few milliseconds).
        state = dict(super().__getstate__())
        state.pop("compiled_forest_", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # Also compiles models pickled before the compiled scorer existed.
        if hasattr(self, "forest_"):
            self.compiled_forest_ = CompiledForest(self.forest_)

    def _validated(self, X: npt.ArrayLike) -> FloatArray:
        check_is_fitted(self)
        try:
            features = np.asarray(validate_data(self, X, reset=False, dtype=np.float64))
        except ValueError as exc:
            fitted = getattr(self, "feature_names_in_", None)
            given = getattr(X, "columns", None)
            if fitted is None or given is None or list(fitted) == list(given):
                raise
            # scikit-learn says what is missing or unseen but not the order: show both lists.
            raise ValueError(f"{exc}fitted with {list(fitted)}, given {list(given)}") from None
        return self._floored(features)

    def _floored(self, features: npt.ArrayLike) -> FloatArray:
        # Models saved before one_sided existed have no such columns: nothing to floor.
        columns = getattr(self, "one_sided_columns_", [])
        floored = np.array(features, dtype=np.float64)  # a copy: the caller's rows stay as given
        if columns:
            floored[:, columns] = np.maximum(floored[:, columns], 0.0)
        return floored

    def _risk_from_anomaly(self, anomaly: FloatArray) -> FloatArray:
        # Strictly-lower count, so a row tied with training rows takes the lowest rank of
        # the tie, and a row beyond every training row reaches exactly 1.
        below = np.searchsorted(self.training_scores_, anomaly, side="left")
        return np.asarray(below, dtype=np.float64) / len(self.training_scores_)
