from .arcface import ArcFaceLoss
from .pairwise import MultiSimilarityAux

__all__ = ["ArcFaceLoss", "MultiSimilarityAux"]
