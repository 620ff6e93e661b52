"""Offline text data for training: the embedded stdlib corpus or any prepared TFDS text dataset.

    pipe = scaling.data.load(config.data, config.model.seq_len, config.seed, config.train.global_batch,
                             config.eval.tokens, config.eval.batch)
    pipe.train_batch(step, jax.process_index(), jax.process_count())  # pure function of (seed, step)
    pipe.eval_batches(jax.process_index(), jax.process_count()); pipe.eval_bytes
"""
from scaling.data.batches import Batch
from scaling.data.errors import DataError
from scaling.data.pipeline import DataPipeline, load
from scaling.data.source import validate_dataset_name
from scaling.data.tokenizer import EOD, VOCAB_SIZE, ByteTokenizer

__all__ = ["Batch", "ByteTokenizer", "DataError", "DataPipeline", "EOD", "VOCAB_SIZE", "load",
           "validate_dataset_name"]
