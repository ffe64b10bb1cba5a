"""Accuracy you can check: labelled sets, synthetic degradations, per-threshold tables, calibration.

``labelled`` reads labelled data (a folder per class, or JSONL/CSV with a label
column); ``synth`` builds labelled sets from clean photos (``make-eval-set``);
``metrics`` computes FPR/TPR/precision/F1 tables, ROC and PR curves with bootstrap
intervals (``eval``); ``calibrate`` fits the fused models that ``fused_filter`` runs.
Nothing here is imported by a pipeline run.
"""


class EvalError(ValueError):
    """Bad labelled data or arguments of eval / make-eval-set / calibrate (the command exits 2)."""
