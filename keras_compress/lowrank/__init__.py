"""Low-rank (SVD) factorization of Dense and Conv layers."""

from keras_compress.lowrank.factorize import factorize, rank_for

__all__ = ["factorize", "rank_for"]
