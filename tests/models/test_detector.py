"""AnomalyDetector: scikit-learn conventions, calibration direction and alert rate."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from models.detector import AnomalyDetector

FEATURES = ["amount_z", "daily_count", "night_share", "new_counterparties"]


def normal_rows(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, len(FEATURES)))


def frame(values: np.ndarray, columns: list[str] = FEATURES) -> pd.DataFrame:
    return pd.DataFrame(values, columns=columns)


@pytest.fixture(scope="module")
def fitted() -> AnomalyDetector:
    return AnomalyDetector(n_estimators=100, random_state=0).fit(frame(normal_rows(2000, 1)))


# scikit-learn's own suite passes: the detector declares no outlier-detector type (see its
# docstring), so the generic estimator checks apply, and all of them hold.
@parametrize_with_checks([AnomalyDetector(n_estimators=20, random_state=0)])
def test_scikit_learn_estimator_checks(estimator: AnomalyDetector, check: Any) -> None:
    check(estimator)


def test_init_only_stores_hyperparameters_and_params_round_trip() -> None:
    detector = AnomalyDetector(n_estimators=7, target_alert_rate=2.0)  # invalid, yet accepted
    assert vars(detector) == detector.get_params()
    assert detector.get_params() == {
        "n_estimators": 7,
        "max_samples": "auto",
        "max_features": 1.0,
        "random_state": None,
        "target_alert_rate": 2.0,
        "n_jobs": None,
        "one_sided": (),
    }
    assert detector.set_params(target_alert_rate=0.01) is detector
    assert clone(detector).get_params() == detector.get_params()
    with pytest.raises(ValueError, match=r"target_alert_rate must be in \[0, 1\), got 2.0"):
        AnomalyDetector(target_alert_rate=2.0).fit(normal_rows(50, 0))


def test_fit_returns_self_and_learned_attributes_end_with_underscore() -> None:
    detector = AnomalyDetector(n_estimators=10, random_state=0)
    before = set(vars(detector))
    assert detector.fit(frame(normal_rows(100, 0))) is detector
    learned = set(vars(detector)) - before
    assert learned >= {
        "forest_",
        "training_scores_",
        "threshold_",
        "n_features_in_",
        "feature_names_in_",
    }
    assert all(name.endswith("_") for name in learned)
    assert list(detector.feature_names_in_) == FEATURES
    assert detector.n_features_in_ == len(FEATURES)
    # Refitting on an array forgets the names of the earlier fit.
    detector.fit(normal_rows(100, 0))
    assert not hasattr(detector, "feature_names_in_")


def test_clone_is_unfitted_and_every_method_refuses_before_fit(fitted: AnomalyDetector) -> None:
    fresh = clone(fitted)
    rows = frame(normal_rows(5, 0))
    for method in (fresh.score_samples, fresh.risk_score, fresh.decision_function, fresh.predict):
        with pytest.raises(NotFittedError):
            method(rows)


def test_same_random_state_same_scores_and_threshold() -> None:
    rows = normal_rows(500, 3)
    first = AnomalyDetector(n_estimators=50, random_state=42).fit(rows)
    second = AnomalyDetector(n_estimators=50, random_state=42).fit(rows)
    other = AnomalyDetector(n_estimators=50, random_state=43).fit(rows)
    probe = normal_rows(200, 4)
    assert np.array_equal(first.score_samples(probe), second.score_samples(probe))
    assert first.threshold_ == second.threshold_
    assert not np.array_equal(first.score_samples(probe), other.score_samples(probe))


def test_risk_is_in_unit_interval_and_falls_as_the_raw_score_rises(
    fitted: AnomalyDetector,
) -> None:
    probe = frame(np.vstack([normal_rows(3000, 5), normal_rows(50, 6) * 10]))
    raw = fitted.score_samples(probe)
    risk = fitted.risk_score(probe)
    assert risk.min() >= 0.0
    assert risk.max() <= 1.0
    by_raw_score = np.argsort(raw, kind="stable")
    assert np.all(np.diff(risk[by_raw_score]) <= 0.0)
    # A row far beyond anything seen in training is as risky as the scale allows.
    assert fitted.risk_score(frame(np.full((1, len(FEATURES)), 50.0)))[0] == 1.0


def test_decision_function_and_predict_follow_risk_and_threshold(
    fitted: AnomalyDetector,
) -> None:
    probe = frame(np.vstack([normal_rows(1000, 8), normal_rows(20, 9) * 8]))
    risk = fitted.risk_score(probe)
    decision = fitted.decision_function(probe)
    np.testing.assert_array_equal(decision, risk - fitted.threshold_)
    predicted = fitted.predict(probe)
    assert predicted.dtype == np.int64
    assert set(np.unique(predicted)) <= {0, 1}
    np.testing.assert_array_equal(predicted, (decision > 0).astype(np.int64))


def test_injected_outliers_rank_above_every_inlier() -> None:
    rng = np.random.default_rng(7)
    inliers = rng.normal(size=(2000, len(FEATURES)))
    # 4 to 6 standard deviations out on every feature, in random directions.
    outliers = rng.uniform(4, 6, size=(20, len(FEATURES))) * rng.choice([-1, 1], (20, 4))
    rows = frame(np.vstack([inliers, outliers]))
    detector = AnomalyDetector(random_state=0).fit(rows)  # unsupervised: outliers included
    risk = detector.risk_score(rows)
    assert set(np.argsort(risk)[-20:]) == set(range(2000, 2020))
    assert risk[2000:].min() > np.quantile(risk[:2000], 0.99)
    # Fitted on clean behaviour only, fresh outliers sit beyond every training row.
    clean = AnomalyDetector(random_state=0).fit(frame(inliers))
    assert np.all(clean.risk_score(frame(outliers)) >= 0.99)
    assert clean.predict(frame(outliers)).sum() == 20


@pytest.mark.parametrize(("rows", "rate"), [(4000, 0.005), (1000, 0.0125), (3000, 0.0)])
def test_training_alert_rate_meets_the_target_within_one_row(rows: int, rate: float) -> None:
    training = normal_rows(rows, 11)
    detector = AnomalyDetector(n_estimators=100, random_state=0, target_alert_rate=rate)
    realised = detector.fit(training).predict(training).mean()
    # The alert count is rounded down (the budget is a ceiling), so the realised rate
    # lies within one row, 1/rows, below the target; only tied raw scores at the
    # boundary could take it further, and continuous features leave no ties there.
    assert rate - 1 / rows < realised <= rate


def test_alert_rate_on_fresh_rows_of_the_same_behaviour_is_near_the_target() -> None:
    detector = AnomalyDetector(random_state=0, target_alert_rate=0.005).fit(normal_rows(5000, 12))
    realised = detector.predict(normal_rows(20000, 13)).mean()
    # The threshold is a 99.5th percentile estimated from 25 training rows above it: the
    # estimate, not the scoring, limits agreement, so allow a factor of two either way.
    assert 0.0025 < realised < 0.01


def test_one_sided_features_count_only_their_high_side() -> None:
    rng = np.random.default_rng(21)
    training = frame(rng.normal(size=(3000, len(FEATURES))))
    detector = AnomalyDetector(random_state=0, one_sided=("amount_z", "daily_count"))
    detector.fit(training)
    quiet, loud = np.zeros((1, 4)), np.zeros((1, 4))
    quiet[0, :2], loud[0, :2] = -6.0, 6.0
    # Far below usual on one-sided features is as ordinary as the usual (floored to 0)...
    assert detector.risk_score(frame(quiet))[0] == detector.risk_score(frame(np.zeros((1, 4))))[0]
    # ...far above usual still stands out, and a two-sided feature keeps both tails.
    assert detector.predict(frame(loud))[0] == 1
    other_tail = np.zeros((1, 4))
    other_tail[0, 2:] = -6.0
    assert detector.predict(frame(other_tail))[0] == 1
    assert training["amount_z"].min() < 0, "the caller's rows are not changed"
    with pytest.raises(ValueError, match=r"one_sided names features the data does not have"):
        AnomalyDetector(one_sided=("hour_of_day",)).fit(training)


def test_a_model_saved_before_one_sided_existed_still_scores(fitted: AnomalyDetector) -> None:
    old = pickle.loads(pickle.dumps(fitted))
    del old.one_sided, old.one_sided_columns_  # as unpickled from an older version
    rows = frame(normal_rows(10, 22))
    np.testing.assert_array_equal(old.risk_score(rows), fitted.risk_score(rows))


def test_feature_names_must_match_the_fit(fitted: AnomalyDetector) -> None:
    rows = normal_rows(10, 14)
    reordered = [FEATURES[1], FEATURES[0], *FEATURES[2:]]
    with pytest.raises(ValueError, match="same order") as caught:
        fitted.risk_score(frame(rows, reordered))
    assert str(FEATURES) in str(caught.value)
    assert str(reordered) in str(caught.value)
    renamed = [*FEATURES[:3], "hour_of_day"]
    with pytest.raises(ValueError, match=r"unseen at fit time:\n- hour_of_day") as caught:
        fitted.predict(frame(rows, renamed))
    assert "now missing:\n- new_counterparties" in str(caught.value)
    with pytest.raises(ValueError, match="X has 3 features, but AnomalyDetector is expecting 4"):
        AnomalyDetector(n_estimators=5).fit(rows).score_samples(rows[:, :3])


def test_an_array_after_a_named_fit_is_taken_by_position_with_a_warning(
    fitted: AnomalyDetector,
) -> None:
    # scikit-learn's convention, kept: the caller vouches for the column order.
    rows = normal_rows(10, 14)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        by_position = fitted.risk_score(rows)
    np.testing.assert_array_equal(by_position, fitted.risk_score(frame(rows)))


def test_non_finite_values_are_refused(fitted: AnomalyDetector) -> None:
    rows = normal_rows(20, 15)
    rows[3, 2] = np.nan
    with pytest.raises(ValueError, match=re.escape("NaN")):
        AnomalyDetector().fit(rows)
    rows[3, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fitted.risk_score(frame(rows))


def boundary_rows(detector: AnomalyDetector, rows: int, seed: int) -> np.ndarray:
    """Rows whose values sit on and next to the forest's split thresholds."""
    rng = np.random.default_rng(seed)
    probe = rng.normal(size=(rows, detector.n_features_in_)) * 2
    forest = detector.forest_
    for row in range(rows):
        tree_index = rng.integers(len(forest.estimators_))
        tree = forest.estimators_[tree_index].tree_
        splits = np.flatnonzero(tree.feature >= 0)
        if len(splits) == 0:
            continue
        node = rng.choice(splits)
        column = forest.estimators_features_[tree_index][tree.feature[node]]
        if forest._max_features == detector.n_features_in_:
            column = tree.feature[node]
        threshold = tree.threshold[node]
        as_float32 = np.float32(threshold)
        # The threshold itself, its float32 rounding and the float32 neighbours of both.
        probe[row, column] = rng.choice(
            [
                threshold,
                float(as_float32),
                float(np.nextafter(as_float32, np.float32(np.inf))),
                float(np.nextafter(as_float32, np.float32(-np.inf))),
            ]
        )
    return probe


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("max_features", "max_samples"), [(1.0, "auto"), (0.5, "auto"), (2, 64), (1.0, 1.0)]
)
def test_compiled_scores_equal_the_forests_own(
    seed: int, max_features: float, max_samples: int | float | str
) -> None:
    rng = np.random.default_rng(seed)
    # Rounded features give the trees many tied values, as counts and flags do.
    training = np.round(rng.normal(size=(600, 5)), 1)
    detector = AnomalyDetector(
        n_estimators=60, max_features=max_features, max_samples=max_samples, random_state=seed
    ).fit(training)
    probe = np.vstack(
        [
            training[:100],
            rng.normal(size=(200, 5)) * 3,
            boundary_rows(detector, 400, seed),
            np.round(rng.normal(size=(100, 5)), 1),
        ]
    )
    expected = detector.forest_.score_samples(probe)
    np.testing.assert_allclose(detector.score_samples(probe), expected, rtol=1e-12)
    # Batches of any size give the very same numbers as the whole probe at once.
    singles = np.concatenate([detector.score_samples(probe[i : i + 1]) for i in range(50)])
    np.testing.assert_array_equal(singles, detector.score_samples(probe[:50]))


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_compiled_scores_equal_the_forests_own_for_tiny_training_sets(rows: int) -> None:
    training = normal_rows(rows, 30)
    detector = AnomalyDetector(n_estimators=10, random_state=0).fit(training)
    probe = normal_rows(20, 31)
    expected = detector.forest_.score_samples(probe)
    np.testing.assert_allclose(detector.score_samples(probe), expected, rtol=1e-12)


def test_compiled_scores_survive_a_joblib_round_trip(
    fitted: AnomalyDetector, tmp_path: Path
) -> None:
    assert "compiled_forest_" not in fitted.__getstate__(), "rebuilt on load, not pickled"
    joblib.dump(fitted, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    probe = frame(boundary_rows(fitted, 500, 32))
    expected = fitted.forest_.score_samples(probe.to_numpy())
    np.testing.assert_allclose(loaded.score_samples(probe), expected, rtol=1e-12)
    np.testing.assert_array_equal(loaded.risk_score(probe), fitted.risk_score(probe))


def test_scoring_runs_on_the_compiled_forest_only(
    fitted: AnomalyDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    detector = pickle.loads(pickle.dumps(fitted))

    def refuse(rows: np.ndarray) -> np.ndarray:
        raise AssertionError("the forest's per-tree Python loop was called")

    monkeypatch.setattr(detector.forest_, "score_samples", refuse)
    rows = frame(normal_rows(50, 16))
    np.testing.assert_array_equal(detector.predict(rows), fitted.predict(rows))
    np.testing.assert_array_equal(
        detector.risk_score_rows(rows.to_numpy()), fitted.risk_score(rows)
    )


def test_risk_score_rows_checks_shape_and_finiteness_only(fitted: AnomalyDetector) -> None:
    rows = normal_rows(30, 17)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        expected = fitted.risk_score(rows)
    np.testing.assert_array_equal(fitted.risk_score_rows(rows), expected)
    with pytest.raises(ValueError, match=r"expected rows of 4 features, got shape \(30, 3\)"):
        fitted.risk_score_rows(rows[:, :3])
    rows[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        fitted.risk_score_rows(rows)
    with pytest.raises(NotFittedError):
        clone(fitted).risk_score_rows(rows)


def test_risk_score_rows_floors_one_sided_features_without_changing_the_rows() -> None:
    training = frame(normal_rows(1000, 18))
    detector = AnomalyDetector(n_estimators=50, random_state=0, one_sided=("amount_z",))
    detector.fit(training)
    rows = normal_rows(20, 19)
    rows[:, 0] = -5.0
    given = rows.copy()
    np.testing.assert_array_equal(detector.risk_score_rows(rows), detector.risk_score(frame(rows)))
    np.testing.assert_array_equal(rows, given)
