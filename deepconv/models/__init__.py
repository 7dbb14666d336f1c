"""Model zoo: VGG A, A-LRN, B, C, D, E; AlexNet (one tower or two columns),
torchvision's one-tower AlexNet (alexnet_owt);
small variants of both for small images."""

from deepconv.models.alexnet import alexnet, alexnet_owt
from deepconv.models.small import alexnet_small, digits_net, vgg_small
from deepconv.models.vgg import VGG_CONFIGS, init_from, vgg
from deepconv.nn.layer import count_parameters

__all__ = ["VGG_CONFIGS", "alexnet", "alexnet_owt", "alexnet_small", "count_parameters", "digits_net", "init_from", "vgg",
           "vgg_small"]
