"""Fréchet Audio Distance, KL divergence of tag posteriors, and cosine scores between embeddings.

FAD (Kilgour et al., 2019) fits a Gaussian to each set of embeddings and reports the Fréchet
distance between them: ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``. The matrix square
root is scipy's ``sqrtm``; a singular product (fewer embeddings than dimensions) gets the same small
diagonal offset as the reference FID/FAD implementations.
"""

from __future__ import annotations

import numpy as np

SQRTM_OFFSET = 1e-6  # added to both covariances' diagonals when their product is singular


def gaussian(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) embeddings (N >= 2)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 embeddings of shape (N, D), got {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray) -> float:
    """Fréchet distance between N(mu_a, sigma_a) and N(mu_b, sigma_b); >= 0 up to rounding."""
    import warnings

    from scipy import linalg

    diff = mu_a - mu_b
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # scipy warns on a singular product; it is then retried with the offset
        covmean = linalg.sqrtm(sigma_a @ sigma_b)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma_a.shape[0]) * SQRTM_OFFSET
            covmean = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    covmean = np.real(covmean)
    value = float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def fad(embeddings_a: np.ndarray, embeddings_b: np.ndarray) -> float:
    """FAD between two sets of (N, D) embeddings (each row one window of one clip)."""
    return frechet_distance(*gaussian(embeddings_a), *gaussian(embeddings_b))


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = 1e-8) -> float:
    """KL(p || q) in nats of two class-posterior vectors (C,), each normalised to sum to 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, None)
    q = np.clip(np.asarray(q, dtype=np.float64), eps, None)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity in [-1, 1] of two vectors of the same length (a scalar, never a vector)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"cosine of vectors of different lengths {a.shape} and {b.shape}")
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 0.0 if norm == 0.0 else float(np.clip(a @ b / norm, -1.0, 1.0))
