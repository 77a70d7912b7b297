"""Behavioural features and the IsolationForest detector (filled by the anomaly-model issue)."""
