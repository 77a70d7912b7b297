"""The anomaly detector: an IsolationForest with a calibrated risk score and an alert threshold."""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator  # type: ignore[import-untyped]
from sklearn.ensemble import IsolationForest  # type: ignore[import-untyped]
from sklearn.utils.validation import (  # type: ignore[import-untyped]
    check_is_fitted,
    validate_data,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


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
        self.training_scores_: FloatArray = np.sort(-self.forest_.score_samples(features))
        rows = len(self.training_scores_)
        training_risk = self._risk_from_anomaly(self.training_scores_)
        # Round down: the alert budget is a ceiling for the account managers' workload.
        # With no alert budget at all, only rows beyond the most anomalous training row alert.
        alerts = int(np.floor(self.target_alert_rate * rows))  # < rows, as the rate is < 1
        self.threshold_ = float(training_risk[rows - 1 - alerts])
        return self

    def score_samples(self, X: npt.ArrayLike) -> FloatArray:
        """Raw IsolationForest scores, scikit-learn direction: lower means more abnormal."""
        features = self._validated(X)
        # One forest call per batch: it has a fixed cost of milliseconds per call.
        return np.asarray(self.forest_.score_samples(features), dtype=np.float64)

    def risk_score(self, X: npt.ArrayLike) -> FloatArray:
        """Risk in [0, 1], high means anomalous: the share of training rows scoring lower."""
        return self._risk_from_anomaly(-self.score_samples(X))

    def decision_function(self, X: npt.ArrayLike) -> FloatArray:
        """``risk_score - threshold_``: positive means the row alerts."""
        return self.risk_score(X) - self.threshold_

    def predict(self, X: npt.ArrayLike) -> IntArray:
        """1 where the row alerts (risk above ``threshold_``), 0 where it is normal."""
        return (self.decision_function(X) > 0.0).astype(np.int64)

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
