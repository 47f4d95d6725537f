from .arcface import ArcFaceLoss
from .mixup import mix_batch, mixed_loss
from .pairwise import MultiSimilarityAux

__all__ = ["ArcFaceLoss", "MultiSimilarityAux", "mix_batch", "mixed_loss"]
