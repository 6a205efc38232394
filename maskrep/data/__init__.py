"""The io stage: COCO reading and the synthetic data set."""

from .coco import AnnotationError, CocoInstance, CocoInstances, crop_instances

__all__ = ["AnnotationError", "CocoInstance", "CocoInstances", "crop_instances"]
