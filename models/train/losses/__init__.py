from .arcface import ArcFaceLoss

__all__ = ["ArcFaceLoss"]
