"""Frechet distance between two Gaussians, written out carefully: the independent reference the tests hold
torch-fidelity's FID to, itself checked against closed forms.

FID = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

# sqrtm of a near-singular S1 S2 (fewer samples than feature dimensions) can come back inaccurate or non-finite;
# adding eps to both diagonals makes the product well conditioned (the usual TTUR/pytorch-fid fallback).
SQRTM_RELATIVE_ERROR = 1e-6


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features (N, D) -> mean (D,) and unbiased covariance (D, D), both float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need a (N >= 2, D) feature matrix, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrtm_product(sigma1: np.ndarray, sigma2: np.ndarray) -> tuple[np.ndarray, float]:
    """(S1 S2)^(1/2) and its relative residual ||X X - A||_F / ||A||_F."""
    product = sigma1 @ sigma2
    root = scipy.linalg.sqrtm(product)
    scale = max(np.linalg.norm(product), np.finfo(np.float64).tiny)
    residual = np.linalg.norm(root @ root - product) / scale if np.isfinite(root).all() else np.inf
    return root, float(residual)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")

    root, residual = _sqrtm_product(sigma1, sigma2)
    if residual > SQRTM_RELATIVE_ERROR:
        offset = eps * np.eye(mu1.size)
        root, residual = _sqrtm_product(sigma1 + offset, sigma2 + offset)
        if not np.isfinite(root).all():
            raise ValueError("matrix square root of sigma1 @ sigma2 is not finite even with an eps offset")

    # S1 S2 has real non-negative eigenvalues, so a large imaginary part means the inputs were not covariances.
    if np.iscomplexobj(root):
        imaginary = np.abs(np.diagonal(root).imag).max()
        if imaginary > 1e-3 * max(1.0, np.abs(np.diagonal(root).real).max()):
            raise ValueError(f"matrix square root has an imaginary component {imaginary:.3g}: not covariance matrices?")
        root = root.real

    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))
