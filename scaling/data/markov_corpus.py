"""`synthetic:markov`: documents of a random order-k Markov chain, as a TFDS array_record dataset.

Built offline on first use like the stdlib corpus. The builder config's name carries order, alphabet
and a hash of every parameter (and of the generator's version), so different parameters never reuse
stale data. The dataset info's metadata holds the parameters and the exact entropies (H_0..H_k, the
stop probability, the entropy rate and the stream's optimal loss); `scaling.data.load` turns them into
the optimal loss of the run's own eval set (see markov.optimal_losses).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json

import numpy as np
import tensorflow_datasets as tfds

from scaling.data import markov
from scaling.data.errors import DataError

DATASET = "synthetic:markov"
GENERATOR_VERSION = 2  # bump when sampling changes: it is part of the hash (2: hierarchical Dirichlet rows)


@dataclasses.dataclass(frozen=True)
class MarkovParams:
    """What `data.markov.*` configures; `validated()` names the field of any bad value."""

    order: int = 4
    alphabet: int = 12
    concentration: float = 6.0
    mean_doc_len: float = 512.0
    seed: int = 0
    train_tokens: int = 20_000_000  # symbols in the training split (about; whole documents)
    validation_tokens: int = 1_000_000

    @classmethod
    def from_config(cls, section) -> "MarkovParams":
        known = {f.name for f in dataclasses.fields(cls)}
        given = dict(section) if section is not None else {}
        unknown = sorted(set(given) - known)
        if unknown:
            raise DataError(f"data.markov.{unknown[0]} is not a field; choose from {sorted(known)}")
        return cls(**given).validated()

    def validated(self) -> "MarkovParams":
        def bad(field, why):
            return DataError(f"data.markov.{field}={getattr(self, field)!r} {why}")

        for field in ("order", "alphabet", "seed", "train_tokens", "validation_tokens"):
            v = getattr(self, field)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if field == "seed" else 1):
                raise bad(field, f"must be an integer >= {0 if field == 'seed' else 1}")
        if not 2 <= self.alphabet <= len(markov.SYMBOLS):
            raise bad("alphabet", f"must be in [2, {len(markov.SYMBOLS)}] (printable ASCII symbols)")
        if self.alphabet ** self.order > markov.MAX_STATES:
            raise bad("order", f"gives alphabet**order = {self.alphabet ** self.order} contexts, above "
                      f"{markov.MAX_STATES}; lower data.markov.order or data.markov.alphabet")
        if not (isinstance(self.concentration, (int, float)) and self.concentration > 0):
            raise bad("concentration", "must be a positive number (the hierarchical Dirichlet alpha of the rows)")
        if not (isinstance(self.mean_doc_len, (int, float)) and self.mean_doc_len > 1):
            raise bad("mean_doc_len", "must be a number > 1 (mean document length in symbols)")
        return self

    @property
    def digest(self) -> str:
        blob = json.dumps({**dataclasses.asdict(self), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def spec(self) -> markov.ChainSpec:
        return markov.ChainSpec(order=self.order, alphabet=self.alphabet,
                                concentration=float(self.concentration),
                                mean_doc_len=float(self.mean_doc_len), seed=self.seed)


@functools.lru_cache(maxsize=4)
def chain_of(params: MarkovParams) -> markov.Chain:
    return markov.build_chain(params.spec)


@dataclasses.dataclass(eq=False)
class MarkovConfig(tfds.core.BuilderConfig):
    params: MarkovParams = dataclasses.field(default_factory=MarkovParams)

    @classmethod
    def create(cls, params: MarkovParams) -> "MarkovConfig":
        p = params.validated()
        name = f"k{p.order}-a{p.alphabet}-{p.digest[:12]}"
        return cls(name=name, params=p,
                   description=f"order-{p.order} Markov chain over {p.alphabet} symbols, hierarchical Dirichlet("
                               f"{p.concentration}) rows, mean document {p.mean_doc_len} symbols, "
                               f"seed {p.seed}; parameters sha256 {p.digest}")


def entropies_metadata(ent: markov.Entropies) -> dict:
    return {"conditional_entropies": list(ent.conditional), "stop_prob": ent.stop_prob,
            "entropy_rate": ent.entropy_rate, "true_loss_stream": ent.stream_loss()}


def entropies_from_metadata(meta) -> markov.Entropies:
    return markov.Entropies(conditional=tuple(float(x) for x in meta["conditional_entropies"]),
                            stop_prob=float(meta["stop_prob"]))


class SyntheticMarkov(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "independent stationary documents of a Dirichlet-row order-k chain."}

    def __init__(self, *, config: MarkovConfig | None = None, **kwargs):
        super().__init__(config=config or MarkovConfig.create(MarkovParams()), **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        p: MarkovParams = self.builder_config.params
        return tfds.core.DatasetInfo(
            builder=self, description=self.builder_config.description,
            features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
            metadata=tfds.core.MetadataDict(params=dataclasses.asdict(p), params_sha256=p.digest,
                                            generator_version=GENERATOR_VERSION,
                                            **entropies_metadata(chain_of(p).entropies())))

    def _split_generators(self, dl_manager):
        del dl_manager  # generated here: nothing to download
        p: MarkovParams = self.builder_config.params
        return {"train": self._generate_examples(p.train_tokens, 1),
                "validation": self._generate_examples(p.validation_tokens, 2)}

    def _generate_examples(self, n_tokens: int, stream: int):
        p: MarkovParams = self.builder_config.params
        # Each split its own Philox stream of the seed: the validation split shares the chain only.
        rng = np.random.Generator(np.random.Philox(key=[p.seed, stream]))
        n_docs = max(1, round(n_tokens / p.mean_doc_len))
        for i, doc in enumerate(markov.sample_documents(chain_of(p), n_docs, rng)):
            yield f"{i:09d}", {"text": doc}
