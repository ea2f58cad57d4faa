"""Data for co-supervised learning: bundled offline sets, local image folders and Hub datasets, weak-to-strong
splits (map-style and streaming), the one image-decoding path, and the image datasets of full fine-tuning."""

from .animal_mnist import ANIMAL_MNIST_CLASSES, load_animal_mnist
from .digits_domains import DIGIT_CLASSES, DIGIT_DOMAINS, load_digits_domains
from .image_folder import detect_layout, load_image_folder
from .images import DecodedBatch, check_image, decode_image, load_image, preprocess_images, to_rgb
from .loading import BUNDLED_DATASETS, class_names, infer_columns, is_local_source, load_csl_dataset
from .splits import cap, cap_indices, make_weak_to_strong_splits, weak_to_strong_indices
from .streaming import stream_splits
from .weak_to_strong import WeakToStrongData, load_weak_to_strong_data

__all__ = [
    "BUNDLED_DATASETS",
    "ANIMAL_MNIST_CLASSES",
    "DIGIT_CLASSES",
    "DIGIT_DOMAINS",
    "load_csl_dataset",
    "load_animal_mnist",
    "load_digits_domains",
    "load_image_folder",
    "detect_layout",
    "infer_columns",
    "class_names",
    "is_local_source",
    "make_weak_to_strong_splits",
    "weak_to_strong_indices",
    "load_weak_to_strong_data",
    "WeakToStrongData",
    "stream_splits",
    "cap",
    "cap_indices",
    "decode_image",
    "check_image",
    "to_rgb",
    "load_image",
    "preprocess_images",
    "DecodedBatch",
]
