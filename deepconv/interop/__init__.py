"""Weights and arrays from other frameworks: DLPack (:func:`from_dlpack`);
torchvision state dicts and Caffe ``.caffemodel`` files into (and out of)
deepconv's VGG / AlexNet models (:mod:`~deepconv.interop.torchvision`,
:mod:`~deepconv.interop.caffe`); any of them by file name
(:func:`~deepconv.interop.weights.load_weights`)."""

from deepconv.interop.dlpack import from_dlpack

__all__ = ["from_dlpack"]
