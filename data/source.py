"""What every data source offers the pipelines: class names, split sizes, labels, examples.

A source yields dicts {'image': uint8 (h, w, c), 'label': int64 (-1 when unlabelled),
'index': int64}; 'index' is the example's position in its split, the same whatever the read
order, sharding or shuffling, so that label subsets and augmentation seeds can refer to it.
"""
import abc
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf


def base_split(split: str) -> str:
    """'train[:10%]' -> 'train': the split a TFDS slicing expression reads from."""
    return split.split('[', 1)[0]


def shard_by_index(ds: tf.data.Dataset,
                   input_context: Optional[tf.distribute.InputContext]) -> tf.data.Dataset:
    """Keeps the examples of this input pipeline: those whose index % pipelines == pipeline id.

    Filtering on the stable index, rather than `Dataset.shard` on position, keeps the shards
    disjoint even when the read order is not deterministic.
    """
    if input_context is None or input_context.num_input_pipelines == 1:
        return ds
    count = input_context.num_input_pipelines
    pipeline_id = input_context.input_pipeline_id
    return ds.filter(lambda ex: ex['index'] % count == pipeline_id)


class Source(abc.ABC):
    """A labelled (or unlabelled) image data set with named splits.

    Attributes:
      name: data set name, for messages.
      class_names: tuple of class names; label k is class_names[k]. Empty when unlabelled.
      splits: tuple of split names.
    """

    name: str
    class_names: Sequence[str]
    splits: Sequence[str]
    # Whether as_dataset(decode=False) gives the encoded files (see as_dataset).
    reads_encoded: bool = False

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for an unlabelled source)."""
        return len(self.class_names)

    def check_split(self, split: str) -> None:
        """Raises a ValueError naming the available splits when `split` is not one of them."""
        if base_split(split) not in self.splits:
            raise ValueError(f'{self.name} has no split {split!r}; available splits: '
                             f'{", ".join(self.splits)}.')

    @abc.abstractmethod
    def num_examples(self, split: str) -> int:
        """Number of examples in `split`."""

    @abc.abstractmethod
    def labels(self, split: str) -> np.ndarray:
        """int64 labels indexed by 'index': (num_examples(base_split(split)),).

        -1 marks unlabelled examples and, for a slice such as 'train[:10%]', those outside it.
        """

    @abc.abstractmethod
    def as_dataset(self, split: str, shuffle_files: bool = False, seed: int = 0,
                   input_context: Optional[tf.distribute.InputContext] = None,
                   decode: bool = True) -> tf.data.Dataset:
        """The examples of `split`, one pass, as dicts {'image', 'label', 'index'}.

        Args:
          split: split name (TFDS sources accept slicing such as 'train[:10%]').
          shuffle_files: read the files in a seeded random order (TFDS sources).
          seed: seed of the file order.
          input_context: when given, only this input pipeline's share of the examples.
          decode: False (only where `reads_encoded`): 'image' is the encoded file, a
            scalar string, for a pipeline that decodes only what it needs of it.

        Returns:
          tf.data.Dataset of {'image': uint8 (h, w, c), 'label': int64, 'index': int64}.
        """
