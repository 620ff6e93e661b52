"""Data pipeline: stdlib TFDS builder, TFDS-by-name, packing, pure-function batches, errors.

Built on a few-hundred-file slice of the real stdlib (StdlibConfig.create(max_files=...)) so the whole
module runs in seconds; the full corpus is the same code with max_files=None.
"""
import pathlib
import platform
import shutil
import threading

import numpy as np
import pytest
import tensorflow_datasets as tfds

import scaling.data as sd
from scaling.config import default_config
from scaling.data import batches, source, stdlib_corpus
from scaling.data.stdlib_corpus import StdlibConfig
from scaling.data.tokenizer import EOD, ByteTokenizer

SEQ = 64


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def small_cfg():
    # 10% validation so a 200-file slice still has a validation split of a dozen documents.
    return StdlibConfig.create(max_files=200, val_per_mille=100)


def data_config(data_dir, dataset="stdlib", **kw):
    c = default_config().data
    c.dataset, c.data_dir = dataset, str(data_dir)
    c.update(kw)
    return c


def load(data_dir, cfg, seed=0, global_batch=8, eval_tokens=1000, eval_batch=4, seq_len=SEQ, **kw):
    return sd.load(data_config(data_dir, **kw), seq_len, seed, global_batch, eval_tokens, eval_batch, stdlib=cfg)


@pytest.fixture(scope="module")
def pipe(data_dir, small_cfg):
    return load(data_dir, small_cfg)


def read_split(builder, split):
    ds = builder.as_data_source(split)
    return [ds[i] for i in range(len(ds))]


# --- the stdlib builder -------------------------------------------------------------------------

def test_builder_writes_array_record_and_records_version_and_hash(data_dir, small_cfg, pipe):
    opened = source.open_dataset("stdlib", str(data_dir), stdlib=small_cfg)
    files = sorted(p.name for p in pathlib.Path(opened.builder.data_path).iterdir())
    assert any(f.startswith("python_stdlib-train.array_record-") for f in files), files
    assert any(f.startswith("python_stdlib-validation.array_record-") for f in files), files
    assert not any("tfrecord" in f or "parquet" in f for f in files), files
    # A builder read back from the directory alone (no config object) carries version and hash.
    info = tfds.builder_from_directory(str(opened.builder.data_path)).info
    assert info.file_format == tfds.core.FileFormat.ARRAY_RECORD
    assert info.metadata["python_version"] == platform.python_version()
    assert info.metadata["manifest_sha256"] == small_cfg.manifest.digest
    assert info.metadata["n_files"] == len(small_cfg.manifest.files) == 200
    assert small_cfg.manifest.digest in info.description
    assert small_cfg.name == f"py{platform.python_version()}-{small_cfg.manifest.digest[:12]}"
    assert small_cfg.name in str(opened.builder.data_path)


def test_manifest_is_the_stdlib_py_files_without_site_packages():
    m = stdlib_corpus.scan(stdlib_corpus.stdlib_root())
    paths = [p for p, _ in m.files]
    assert all(p.endswith(".py") for p in paths)
    assert not any("site-packages" in p or "dist-packages" in p for p in paths)
    assert "os.py" in paths and any(p.startswith("test/") for p in paths)  # the test suite is in
    assert m.n_bytes > 10_000_000


def test_changed_stdlib_gets_a_new_dataset_dir(tmp_path, data_dir):
    root = tmp_path / "lib"
    for i in range(12):
        (root / "pkg").mkdir(parents=True, exist_ok=True)
        (root / "pkg" / f"m{i}.py").write_text(f"x = {i}\n" * (i + 1))
    (root / "site-packages").mkdir()
    (root / "site-packages" / "foreign.py").write_text("import this\n")
    (root / "notes.txt").write_text("not python\n")
    a = StdlibConfig.create(root=str(root), val_per_mille=500)
    assert [p for p, _ in a.manifest.files] == sorted(f"pkg/m{i}.py" for i in range(12))
    assert StdlibConfig.create(root=str(root), val_per_mille=500).name == a.name  # deterministic
    pa = source.open_dataset("stdlib", str(data_dir), stdlib=a).builder.data_path
    (root / "pkg" / "m3.py").write_text("x = 'patched'\n")
    b = StdlibConfig.create(root=str(root), val_per_mille=500)
    assert b.name != a.name and b.manifest.digest != a.manifest.digest
    opened = source.open_dataset("stdlib", str(data_dir), stdlib=b)
    assert opened.built_now and opened.builder.data_path != pa  # not the stale build of `a`
    patched = [r["text"] for r in read_split(opened.builder, "train") + read_split(opened.builder, "validation")]
    assert b"x = 'patched'\n" in patched


def test_split_is_by_document_disjoint_and_deterministic(tmp_path, data_dir, small_cfg, pipe):
    first = source.open_dataset("stdlib", str(data_dir), stdlib=small_cfg).builder
    again = source.open_dataset("stdlib", str(tmp_path), stdlib=StdlibConfig.create(max_files=200, val_per_mille=100))
    assert again.built_now  # an independent build in a fresh data_dir
    split_paths = {}
    for name, builder in (("first", first), ("again", again.builder)):
        for split in ("train", "validation"):
            split_paths[name, split] = [r["path"].decode() for r in read_split(builder, split)]
    # Same documents in the same order: hosts that each build their own copy see the same stream.
    assert split_paths["first", "train"] == split_paths["again", "train"]
    assert split_paths["first", "validation"] == split_paths["again", "validation"]
    split_paths = {k: set(v) for k, v in split_paths.items()}
    train, val = split_paths["first", "train"], split_paths["first", "validation"]
    assert train and val and not train & val
    assert train | val == {p for p, _ in small_cfg.manifest.files}
    assert all(stdlib_corpus.is_validation(p, 100) for p in val)
    assert split_paths["again", "train"] == train and split_paths["again", "validation"] == val


def test_parallel_first_use_builds_once(tmp_path):
    cfg = StdlibConfig.create(max_files=40, val_per_mille=300)
    barrier, results = threading.Barrier(2), []

    def open_it():
        barrier.wait()
        results.append(source.open_dataset("stdlib", str(tmp_path), stdlib=cfg).built_now)

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == [False, True]


# --- packing ------------------------------------------------------------------------------------

def test_packing_round_trips_every_token(data_dir, small_cfg, pipe):
    builder = source.open_dataset("stdlib", str(data_dir), stdlib=small_cfg).builder
    for split, packed in (("train", pipe.train), ("validation", pipe.eval)):
        docs = [r["text"] for r in read_split(builder, split)]
        expected = [EOD]
        for d in docs:
            expected += list(d) + [EOD]
        np.testing.assert_array_equal(np.asarray(packed.tokens), expected)
        inputs, targets, weights = packed.rows(np.arange(packed.n_sequences))
        assert inputs.shape == (packed.n_sequences, SEQ) and inputs.dtype == np.int32
        np.testing.assert_array_equal(targets[weights > 0], expected[1:])  # nothing dropped
        np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])  # shifted by one
        if packed.n_targets % SEQ:
            assert weights[-1, -1] == 0 and targets[-1, -1] == EOD  # padded tail, not counted
    assert pipe.train_tokens_per_epoch == len(pipe.train.tokens) - 1
    n_bytes = sum(s for p, s in small_cfg.manifest.files)
    assert pipe.train.n_targets + pipe.eval.n_targets == n_bytes + len(small_cfg.manifest.files)


def test_token_cache_is_a_flat_uint16_npy_reused_on_reload(data_dir, small_cfg, pipe):
    cache = sorted((pathlib.Path(source.open_dataset("stdlib", str(data_dir), stdlib=small_cfg)
                                 .builder.data_path) / "tokens").glob("*.npy"))
    assert [p.name.split(".")[0] for p in cache] == ["train", "validation"]
    arr = np.load(cache[0], mmap_mode="r")
    assert arr.dtype == np.uint16 and arr.ndim == 1 and isinstance(pipe.train.tokens, np.memmap)
    mtimes = [p.stat().st_mtime_ns for p in cache]
    load(data_dir, small_cfg)
    assert [p.stat().st_mtime_ns for p in cache] == mtimes
    assert not list(cache[0].parent.glob("*.tmp"))


# --- batches ------------------------------------------------------------------------------------

def test_train_batch_is_a_pure_function_of_seed_and_step(data_dir, small_cfg, pipe):
    steps = [0, 1, 7, 10_000_003]
    first = {s: pipe.train_batch(s) for s in steps}
    batches.epoch_permutation.cache_clear()
    fresh = load(data_dir, small_cfg)
    for s in reversed(steps):
        b = fresh.train_batch(s)
        for field in ("inputs", "targets", "weights"):
            np.testing.assert_array_equal(getattr(b, field), getattr(first[s], field))
    b = first[0]
    assert b.inputs.shape == b.targets.shape == b.weights.shape == (8, SEQ)
    assert (b.inputs.dtype, b.targets.dtype, b.weights.dtype) == (np.int32, np.int32, np.float32)
    other_seed = load(data_dir, small_cfg, seed=1).train_batch(0)
    assert not np.array_equal(other_seed.inputs, b.inputs)
    assert not np.array_equal(pipe.train_batch(1).inputs, b.inputs)


def test_each_epoch_visits_every_sequence_once_in_a_new_order():
    n, gb = 53, 8  # an epoch boundary falls inside a batch
    draws = np.concatenate([batches.sequence_indices(n, 5, gb, s, 0, gb) for s in range(-(-2 * n // gb))])
    e0, e1 = draws[:n], draws[n:2 * n]
    assert sorted(e0) == sorted(e1) == list(range(n))
    assert not np.array_equal(e0, e1)


def test_process_slices_concatenate_to_the_global_batch(pipe):
    for step in (0, 3):
        whole = pipe.train_batch(step)
        for count in (2, 4, 8):
            parts = [pipe.train_batch(step, p, count) for p in range(count)]
            assert all(len(x.inputs) == 8 // count for x in parts)
            for field in ("inputs", "targets", "weights"):
                np.testing.assert_array_equal(np.concatenate([getattr(x, field) for x in parts]),
                                              getattr(whole, field))
    evals = pipe.eval_batches()
    halves = [pipe.eval_batches(p, 2) for p in range(2)]
    for i, b in enumerate(evals):
        np.testing.assert_array_equal(np.concatenate([h[i].targets for h in halves]), b.targets)
    with pytest.raises(sd.DataError, match="train.global_batch"):
        pipe.train_batch(0, 0, 3)


def test_eval_set_is_fixed_and_counts_exact_tokens_and_bytes(data_dir, small_cfg, pipe):
    evals = pipe.eval_batches()
    assert len(evals) == -(-(-(-1000 // SEQ)) // 4)
    assert all(b.inputs.shape == (4, SEQ) for b in evals)
    assert sum(b.weights.sum() for b in evals) == 1000 == pipe.eval_tokens
    again = load(data_dir, small_cfg, seed=9).eval_batches()  # no shuffle: the seed does not matter
    for a, b in zip(evals, again):
        np.testing.assert_array_equal(a.targets, b.targets)
        np.testing.assert_array_equal(a.weights, b.weights)
    seq = batches.eval_sequence_indices(pipe.eval.n_sequences, 1000, SEQ)
    assert len(seq) == 16 and np.all(np.diff(seq) > 0)
    assert seq[0] == 0 and seq[-1] >= pipe.eval.n_sequences * 15 // 16 - 1  # spread over the split
    _, want, _ = pipe.eval.rows(seq)
    targets = np.concatenate([b.targets[b.weights > 0] for b in evals])
    np.testing.assert_array_equal(targets, want.reshape(-1)[:1000])
    assert pipe.eval_bytes == int((targets != EOD).sum()) == len(ByteTokenizer().decode(targets))
    with pytest.raises(sd.DataError, match="eval.tokens"):
        load(data_dir, small_cfg, eval_tokens=pipe.eval.n_targets + 1)


def test_bits_per_byte_charges_eod_loss_to_the_bytes(data_dir, small_cfg, pipe):
    # A model uniform over the 256 byte values that is certain of every EOD spends exactly 8 bits per
    # byte; its mean loss per token is diluted by the EOD targets, which encode no bytes.
    pipe = load(data_dir, small_cfg, eval_tokens=pipe.eval.n_targets)  # the whole split
    evals = pipe.eval_batches()
    is_byte = [(b.targets != EOD) & (b.weights > 0) for b in evals]
    n_eod = sum(int(((b.targets == EOD) & (b.weights > 0)).sum()) for b in evals)
    assert n_eod > 0  # the eval set crosses document boundaries, or this test proves nothing
    nats = sum(int(m.sum()) for m in is_byte) * np.log(256) / pipe.eval_tokens
    assert pipe.bits_per_byte(nats) == pytest.approx(8.0, rel=1e-12)


# --- TFDS by name ---------------------------------------------------------------------------------

class TinyLines(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A TFDS text dataset prepared elsewhere; the pipeline must find it from its files alone."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="small")]

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"sentence": tfds.features.Text(), "id": tfds.features.Scalar(np.int64)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 300), "test": self._generate_examples(300, 340)}

    def _generate_examples(self, lo, hi):
        for i in range(lo, hi):
            yield i, {"sentence": f"sentence number {i} é {'x' * (i % 17)}", "id": i}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_tfds")
    TinyLines(config="small", data_dir=str(d)).download_and_prepare(file_format="array_record")
    return d


def test_tfds_dataset_by_name_reads_prepared_array_record(tiny_dir):
    p = sd.load(data_config(tiny_dir, "tfds:tiny_lines/small", text_key="sentence", eval_split="test"),
                16, 0, 4, 200, 2)
    ro = tfds.builder("tiny_lines/small", data_dir=str(tiny_dir))  # from files: the class is unregistered
    assert type(ro).__name__ == "ReadOnlyBuilder"
    for split, packed in (("train", p.train), ("test", p.eval)):
        sentences = [r["sentence"] for r in read_split(ro, split)]
        assert p.tokenizer.decode(packed.tokens) == b"".join(sentences)
        assert int((np.asarray(packed.tokens) == EOD).sum()) == len(sentences) + 1
    b = p.train_batch(2, 1, 2)
    assert b.inputs.shape == (2, 16)
    with pytest.raises(sd.DataError, match="data.text_key='text'.*sentence"):
        sd.load(data_config(tiny_dir, "tfds:tiny_lines/small", eval_split="test"), 16, 0, 4, 200, 2)
    with pytest.raises(sd.DataError, match="data.eval_split='validation'"):
        sd.load(data_config(tiny_dir, "tfds:tiny_lines/small", text_key="sentence"), 16, 0, 4, 200, 2)


@pytest.mark.parametrize("name", ["lm1b", "c4/en", "tiny_lines/small", "no_such_dataset_xyz"])
def test_missing_tfds_dataset_is_one_line_with_the_prepare_command(tmp_path, name):
    with pytest.raises(sd.DataError) as e:
        sd.load(data_config(tmp_path, f"tfds:{name}"), 16, 0, 4, 200, 2)
    msg = str(e.value)
    assert "\n" not in msg and "not prepared" in msg
    assert f"tfds build {name} --data_dir={tmp_path.resolve()} --file_format=array_record" in msg


def test_unknown_dataset_name_is_one_line_naming_the_field(tmp_path):
    for bad in ("wikipedia", "tfds:", "stdlib2"):
        with pytest.raises(sd.DataError) as e:
            sd.load(data_config(tmp_path, bad), 16, 0, 4, 200, 2)
        assert "\n" not in str(e.value) and str(e.value).startswith(f"data.dataset={bad!r}")
    assert not list(tmp_path.iterdir())  # rejected before touching disk


def test_empty_data_dir_means_env_then_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SCALING_DATA_DIR", str(tmp_path))
    assert source.resolve_data_dir("") == tmp_path.resolve()
    assert source.resolve_data_dir(str(tmp_path / "x")) == (tmp_path / "x").resolve()
    monkeypatch.delenv("SCALING_DATA_DIR")
    assert source.resolve_data_dir("") == pathlib.Path("~/.cache/scaling/tfds").expanduser().resolve()


def test_dataset_prepared_as_tfrecord_is_refused_with_the_rebuild_command(tiny_dir, tmp_path):
    shutil.copytree(tiny_dir / "tiny_lines", tmp_path / "tiny_lines")
    info = next((tmp_path / "tiny_lines").glob("small/*/dataset_info.json"))
    info.write_text(info.read_text().replace('"fileFormat": "array_record"', '"fileFormat": "tfrecord"'))
    with pytest.raises(sd.DataError, match=r"prepared as tfrecord.*--file_format=array_record"):
        sd.load(data_config(tmp_path, "tfds:tiny_lines/small", text_key="sentence", eval_split="test"),
                16, 0, 4, 200, 2)


def test_unusable_data_dir_names_the_field(tmp_path, small_cfg):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(sd.DataError, match="data.data_dir"):
        load(blocker / "tfds", small_cfg)


# --- data.unique_tokens: a fixed subset, repeated -------------------------------------------------

def _rows(batch) -> list[bytes]:
    return [r.tobytes() for r in batch.inputs]


def test_unique_tokens_trains_on_a_fixed_subset_repeated(data_dir, small_cfg, pipe):
    limited = load(data_dir, small_cfg, unique_tokens=9 * SEQ + 1)  # rounds up to 10 whole sequences
    assert limited.train.n_sequences == 10 and limited.train_tokens_per_epoch == 10 * SEQ
    assert limited.train.base.n_sequences == pipe.train.n_sequences  # the same split underneath
    subset_rows = _rows(sd.Batch(*limited.train.rows(np.arange(10))))
    seen = [r for step in range(5) for r in _rows(limited.train_batch(step))]  # 40 draws: 4 epochs
    assert sorted(set(seen)) == sorted(set(subset_rows))
    assert all(seen.count(r) == 4 for r in subset_rows)
    assert limited.train_batch(0).weights.all()  # whole sequences only: no padded tail


def test_unique_subset_and_batches_are_pure_functions_of_seed_and_step(data_dir, small_cfg):
    first = load(data_dir, small_cfg, unique_tokens=12 * SEQ)
    want = {s: first.train_batch(s) for s in (0, 5, 1001)}
    batches.epoch_permutation.cache_clear()
    again = load(data_dir, small_cfg, unique_tokens=12 * SEQ)  # as a restarted run loads it
    np.testing.assert_array_equal(again.train.index, first.train.index)
    for s, b in want.items():
        np.testing.assert_array_equal(again.train_batch(s).inputs, b.inputs)
    other = load(data_dir, small_cfg, seed=1, unique_tokens=12 * SEQ)
    assert not np.array_equal(other.train.index, first.train.index)


def test_unique_tokens_zero_is_the_whole_split_and_too_many_is_one_line(data_dir, small_cfg, pipe):
    whole = load(data_dir, small_cfg, unique_tokens=0).train
    assert type(whole) is type(pipe.train) and whole.n_sequences == pipe.train.n_sequences
    with pytest.raises(sd.DataError, match=r"^data.unique_tokens=\d+ exceeds the \d+ tokens.*lower it"):
        load(data_dir, small_cfg, unique_tokens=pipe.train_tokens_per_epoch + 1)
    from scaling import validate
    c = default_config()
    c.data.unique_tokens = -5
    with pytest.raises(validate.ConfigError, match="data.unique_tokens=-5 must be an integer >= 0"):
        validate.check(c, 1)
