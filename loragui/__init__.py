"""loragui: adapt a pretrained UNet segmentation model to new images with LoRA."""

__version__ = "0.1.0"
