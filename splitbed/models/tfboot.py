"""The one way splitbed starts TensorFlow and Keras: quiet TensorFlow's C++ start-up chatter (it hides real
messages; errors are kept, and a level the user set wins), then import. Model loading, preprocessing, graph
cutting, the nodes' GPU query and the doctor all go through here, and node processes are started with
`QUIET_ENV`, so no module imports TensorFlow its own way.
"""

from __future__ import annotations

import os
from typing import Any

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def quiet() -> None:
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)


def tensorflow() -> Any:
    """The tensorflow module, imported quietly."""
    quiet()
    import tensorflow as tf

    return tf


def keras() -> Any:
    """The keras module (Keras 3 on TensorFlow), imported quietly."""
    quiet()
    import keras as keras_module

    return keras_module
