"""Evaluation: metrics, scoring of rollouts, bootstrap intervals, scorecards, findings, the
report, the evaluation key."""
