"""Open the configured dataset as a TFDS builder whose splits are random-access `array_record` files.

`stdlib` and `synthetic:markov` are built on first use (under a file lock, so parallel runs sharing a
data_dir build each once);
`tfds:<name>[/<config>]` must already be prepared in data_dir, because training machines are offline.
Every failure a user can fix is a `DataError` with one line naming the field and the fix.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import pathlib
from typing import Iterator

import tensorflow_datasets as tfds

from scaling.data import markov_corpus
from scaling.data.errors import DataError
from scaling.data.markov import Entropies
from scaling.data.stdlib_corpus import PythonStdlib, StdlibConfig

STDLIB = "stdlib"
TFDS_PREFIX = "tfds:"
DEFAULT_DATA_DIR = "~/.cache/scaling/tfds"
_LOCK_DIR = ".scaling-locks"


@dataclasses.dataclass(frozen=True)
class OpenedDataset:
    builder: tfds.core.DatasetBuilder
    dataset: str  # the config's data.dataset, for messages
    text_key: str
    built_now: bool = False  # True when this call prepared the data (stdlib, synthetic:markov)
    entropies: Entropies | None = None  # the source's exact entropies, when it has them (markov)


def validate_dataset_name(dataset: str) -> None:
    """Syntax check without touching disk, so config validation can run it before any compute."""
    if dataset in (STDLIB, markov_corpus.DATASET) or (
            dataset.startswith(TFDS_PREFIX) and len(dataset) > len(TFDS_PREFIX)):
        return
    raise DataError(f"data.dataset={dataset!r} is unknown: use 'stdlib', '{markov_corpus.DATASET}' or "
                    "'tfds:<name>[/<config>]' (e.g. 'tfds:lm1b')")


def resolve_data_dir(data_dir: str) -> pathlib.Path:
    """'' means $SCALING_DATA_DIR, else ~/.cache/scaling/tfds."""
    chosen = data_dir or os.environ.get("SCALING_DATA_DIR") or DEFAULT_DATA_DIR
    return pathlib.Path(chosen).expanduser().resolve()


@contextlib.contextmanager
def file_lock(path: pathlib.Path) -> Iterator[None]:
    """Exclusive advisory lock (flock): released by the kernel even if the holder is SIGKILLed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def lock_path(data_dir: pathlib.Path, key: str) -> pathlib.Path:
    # Outside the dataset directories, where TFDS would mistake a lock file for a version.
    return data_dir / _LOCK_DIR / (key.replace("/", "__") + ".lock")


def open_dataset(dataset: str, data_dir: str, text_key: str = "text",
                 stdlib: StdlibConfig | None = None,
                 markov: markov_corpus.MarkovParams | None = None) -> OpenedDataset:
    """`stdlib` overrides the corpus config of the stdlib dataset (tests use a small one);
    `markov` gives the chain of synthetic:markov (default: MarkovParams())."""
    validate_dataset_name(dataset)
    root = resolve_data_dir(data_dir)
    if dataset == STDLIB:
        return _open_stdlib(root, stdlib or StdlibConfig.create())
    if dataset == markov_corpus.DATASET:
        return _open_markov(root, markov or markov_corpus.MarkovParams())
    return _open_tfds(dataset, dataset[len(TFDS_PREFIX):], root, text_key)


def _open_stdlib(data_dir: pathlib.Path, config: StdlibConfig) -> OpenedDataset:
    _require_writable(data_dir)
    builder = PythonStdlib(config=config, data_dir=str(data_dir))
    built = False
    if not builder.is_prepared():
        with file_lock(lock_path(data_dir, f"python_stdlib-{config.name}")):
            builder = PythonStdlib(config=config, data_dir=str(data_dir))  # another process may have won
            if not builder.is_prepared():
                builder.download_and_prepare(file_format="array_record")
                built = True
    return OpenedDataset(builder=builder, dataset=STDLIB, text_key="text", built_now=built)


def _open_markov(data_dir: pathlib.Path, params: markov_corpus.MarkovParams) -> OpenedDataset:
    _require_writable(data_dir)
    config = markov_corpus.MarkovConfig.create(params)
    builder = markov_corpus.SyntheticMarkov(config=config, data_dir=str(data_dir))
    built = False
    if not builder.is_prepared():
        with file_lock(lock_path(data_dir, f"synthetic_markov-{config.name}")):
            builder = markov_corpus.SyntheticMarkov(config=config, data_dir=str(data_dir))
            if not builder.is_prepared():
                builder.download_and_prepare(file_format="array_record")
                built = True
    return OpenedDataset(builder=builder, dataset=markov_corpus.DATASET, text_key="text", built_now=built,
                         entropies=markov_corpus.entropies_from_metadata(builder.info.metadata))


def _require_writable(data_dir: pathlib.Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"data.data_dir={str(data_dir)!r} cannot be created ({e.strerror}); "
                        "point data.data_dir or $SCALING_DATA_DIR at a writable directory") from None
    if not os.access(data_dir, os.W_OK):
        raise DataError(f"data.data_dir={str(data_dir)!r} is not writable; "
                        "point data.data_dir or $SCALING_DATA_DIR at a writable directory")


def prepare_command(name: str, data_dir: pathlib.Path) -> str:
    return f"tfds build {name} --data_dir={data_dir} --file_format=array_record"


def _open_tfds(dataset: str, name: str, data_dir: pathlib.Path, text_key: str) -> OpenedDataset:
    missing = (f"data.dataset={dataset!r}: {name} is not prepared in {data_dir}; on a machine with internet "
               f"run `{prepare_command(name, data_dir)}` and copy {data_dir}/{name.split('/')[0].split(':')[0]} "
               "here (or set data.data_dir)")
    try:
        builder = tfds.builder(name, data_dir=str(data_dir))
    except Exception:  # DatasetNotFoundError, unknown config/version: TFDS's message is 100+ lines
        raise DataError(missing) from None
    if not builder.is_prepared():
        raise DataError(missing)
    fmt = builder.info.file_format
    if fmt != tfds.core.FileFormat.ARRAY_RECORD:
        raise DataError(f"data.dataset={dataset!r} is prepared as {getattr(fmt, 'value', fmt)} in {data_dir}, "
                        f"but random access needs array_record: run `{prepare_command(name, data_dir)}`")
    features = builder.info.features
    if text_key not in features:
        raise DataError(f"data.text_key={text_key!r} is not a feature of {name}; "
                        f"choose one of {sorted(features.keys())}")
    return OpenedDataset(builder=builder, dataset=dataset, text_key=text_key)


def split_source(opened: OpenedDataset, split: str, field: str):
    """Random-access source of one split (TFDS's ArrayRecordDataSource); `field` names it in errors."""
    splits = opened.builder.info.splits
    if split.split("[")[0] not in splits:  # TFDS slicing ('train[:90%]') is allowed
        raise DataError(f"{field}={split!r} is not a split of {opened.dataset}; "
                        f"choose one of {sorted(splits.keys())}")
    return opened.builder.as_data_source(split)
