"""Model zoo: VGG A, A-LRN, B, C, D, E; AlexNet (one tower or two columns);
small variants of both for small images."""

from deepconv.models.alexnet import alexnet
from deepconv.models.small import alexnet_small, digits_net, vgg_small
from deepconv.models.vgg import VGG_CONFIGS, init_from, vgg
from deepconv.nn.layer import count_parameters

__all__ = ["VGG_CONFIGS", "alexnet", "alexnet_small", "count_parameters", "digits_net", "init_from", "vgg",
           "vgg_small"]
