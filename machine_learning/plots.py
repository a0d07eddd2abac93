"""Evaluation plots written as PNG files, so they exist on disk before any upload is tried."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TOP_FEATURES = 20


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window (CI has no display)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 5), dpi=100)


def write_plots(
    y: np.ndarray, proba: np.ndarray, importance: dict[str, float], out_dir: Path
) -> list[Path]:
    """Confusion matrix, ROC curve and feature importance of the test set, as PNG files."""
    from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = _figure()
    ConfusionMatrixDisplay.from_predictions(
        y, (proba >= 0.5).astype(int), display_labels=["B wins", "A wins"], ax=ax, colorbar=False
    )
    ax.set_title("Confusion matrix (test)")
    paths.append(_save(fig, out_dir / "confusion_matrix.png"))
    fig, ax = _figure()
    RocCurveDisplay.from_predictions(y, proba, ax=ax, name="model")
    ax.set_title("ROC curve (test)")
    paths.append(_save(fig, out_dir / "roc_curve.png"))
    fig, ax = _figure()
    top = sorted(importance.items(), key=lambda item: item[1])[-TOP_FEATURES:]
    ax.barh([name for name, _ in top], [value for _, value in top])
    ax.set_title(f"Feature importance (top {len(top)})")
    paths.append(_save(fig, out_dir / "feature_importance.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
