"""Weights and arrays from other frameworks: DLPack (:func:`from_dlpack`);
torchvision state dicts (:func:`load_torchvision`, :func:`to_torchvision`)
and Caffe ``.caffemodel`` files (:func:`load_caffe`, :func:`save_caffemodel`) into deepconv's VGG /
AlexNet models; any of them by file name (:func:`load_weights`)."""

from deepconv.interop.caffe import load_caffe, read_caffemodel, save_caffemodel, use_caffe_lrn
from deepconv.interop.dlpack import from_dlpack
from deepconv.interop.torchvision import (TORCHVISION_MEAN_RGB, TORCHVISION_STD_RGB,
                                          from_torchvision, load_torchvision, to_torchvision,
                                          torchvision_names)
from deepconv.interop.weights import load_weights

__all__ = ["TORCHVISION_MEAN_RGB", "TORCHVISION_STD_RGB", "from_dlpack", "from_torchvision",
           "load_caffe", "load_torchvision", "load_weights", "read_caffemodel", "save_caffemodel",
           "to_torchvision", "torchvision_names", "use_caffe_lrn"]
