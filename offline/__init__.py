"""Work on recorded or simulated data, away from the plant's live path:
backtests, CSV replay, the public-benchmark evaluations and the KPI report.
Each runs the same engine as the live service where it detects."""
