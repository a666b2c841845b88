"""Typed tables for the spec's sections beside its layers, and :class:`SpecSections`, where each section is
declared once: its model, whether a spec without it gets its defaults, and what a resume may change.

Plain pydantic models (no TensorFlow): they validate the YAML's plain data, give positions through their error
locations, and publish the JSON Schema. The choices of a source's ``format:`` and ``dataset:`` come from the
table of :mod:`seqcli.data.formats`.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError

from seqcli.data.formats import DATASET_NAMES, DATASET_SPLITS, FORMAT_NAMES, datasets_in_words, formats_in_words

# A Keras object named the way layers are: "adam", or {Adam: {learning_rate: 1e-3}}.
KerasObject = Union[StrictStr, dict[StrictStr, dict[StrictStr, Any] | None]]
Number = Union[StrictInt, StrictFloat]
# The choices of `format:` and `dataset:` are the rows of seqcli.data's table (a format is a row and its reader).
DataFormatName = Literal[FORMAT_NAMES]  # type: ignore[valid-type]
DatasetName = Literal[DATASET_NAMES]  # type: ignore[valid-type]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CompileSection(Section):
    optimizer: KerasObject = "adam"
    loss: KerasObject | None = None
    metrics: list[KerasObject] = Field(default_factory=list)
    steps_per_execution: Annotated[StrictInt, Field(ge=1)] | Literal["auto"] = "auto"
    jit_compile: StrictBool | Literal["auto"] = "auto"


class FeatureSection(Section):
    """One feature of a TFRecord file's ``tf.train.Example`` records, as ``tf.io.FixedLenFeature`` reads it."""

    dtype: Literal["float32", "int64"] = Field(description="float32 (a float_list) or int64 (an int64_list)")
    shape: list[Annotated[StrictInt, Field(ge=1)]] = Field(
        default_factory=list, description="the shape of one record's value ([] for a single number)"
    )


Paths = Annotated[list[StrictStr], Field(min_length=1)]


class SourceSection(Section):
    """Where data comes from. A bare string in the spec is shorthand (see seqcli.data)."""

    path: StrictStr | Paths | None = Field(
        default=None, description="a file, a folder, a glob of shards (data/train-*.npz) or a list of shard files"
    )
    dataset: DatasetName | None = Field(default=None, description=f"a dataset by name: {datasets_in_words()}")
    format: DataFormatName | None = Field(
        default=None, description=f"the format (default: told by the file's suffix): {formats_in_words()}"
    )
    compression: Literal["GZIP", "ZLIB", "none"] | None = Field(
        default=None, description="of TFRecord files (default: none)"
    )
    split: Literal[DATASET_SPLITS] = "train"  # type: ignore[valid-type]
    x: StrictStr = "x"
    y: StrictStr | None = "y"
    features: list[StrictStr] | dict[StrictStr, FeatureSection] | None = Field(
        default=None,
        description="a CSV's feature columns, or a TFRecord's features: name -> {dtype, shape}",
    )
    label: StrictStr | None = None
    text: StrictStr | None = Field(default=None, description="a CSV's column of text: the model's (string) input")
    image_size: Annotated[list[Annotated[StrictInt, Field(ge=1)]], Field(min_length=2, max_length=2)] | None = None
    color_mode: Literal["rgb", "grayscale", "rgba"] = "rgb"
    scale: Number | None = None
    weights: StrictStr | None = Field(
        default=None, description="sample weights: an array of the .npz or a column of the CSV, one per sample"
    )

    @model_validator(mode="after")
    def _described(self) -> SourceSection:
        """x and y name described features when the source has a TFRecord description."""
        if isinstance(self.features, dict):
            for role, name in (("x", self.x), ("y", self.y)):
                if name is not None and name not in self.features:
                    close = difflib.get_close_matches(name, list(self.features), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else f"; described: {', '.join(self.features)}"
                    message = f"{role}: {name!r} is not among the described features{hint}"
                    raise PydanticCustomError("described", message.replace("{", "{{").replace("}", "}}"))
        return self


Source = Union[StrictStr, Paths, SourceSection]


class ValidationSplit(Section):
    """Part of data.train held out for validation."""

    fraction: Annotated[float, Field(gt=0, lt=1, strict=True)] = Field(description="the share held out, e.g. 0.2")
    stratify: StrictBool = Field(default=False, description="keep each class's share the same in both splits")


def _validation_kind(value: Any) -> str:
    """A number is a fraction; a mapping with ``fraction`` a split; anything else names a source."""
    if isinstance(value, (ValidationSplit, dict)) and (isinstance(value, ValidationSplit) or "fraction" in value):
        return "Split"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "Fraction"
    return "Source"


Validation = Annotated[
    Union[
        Annotated[Annotated[float, Field(gt=0, lt=1, strict=True)], Tag("Fraction")],
        Annotated[ValidationSplit, Tag("Split")],
        Annotated[Source, Tag("Source")],
    ],
    Discriminator(_validation_kind),
]


class AdaptSection(Section):
    """How layers that learn their state from the data (Normalization, lookups...) adapt before training."""

    samples: Annotated[StrictInt, Field(ge=1)] | None = Field(
        default=None, description="adapt on at most this many training samples (a seeded choice); default all"
    )


class DataSection(Section):
    train: Source | None = None
    validation: Validation | None = None
    test: Source | None = None
    batch_size: Annotated[StrictInt, Field(ge=1)] = 32
    shuffle: StrictBool = True
    shuffle_buffer: Annotated[StrictInt, Field(ge=1)] | None = None
    cache: StrictBool = True
    adapt: AdaptSection = Field(default_factory=AdaptSection)


class EarlyStopping(Section):
    """keras.callbacks.EarlyStopping's arguments, with its defaults."""

    monitor: StrictStr = "val_loss"
    patience: Annotated[StrictInt, Field(ge=0)] = 0
    min_delta: Number = 0
    mode: Literal["auto", "min", "max"] = "auto"
    baseline: Number | None = Field(
        default=None, description="an improvement that does not beat this value does not reset the patience"
    )
    restore_best_weights: StrictBool = False
    start_from_epoch: Annotated[StrictInt, Field(ge=0)] = Field(
        default=0, description="epochs to train before monitoring starts"
    )


class TrainSection(Section):
    epochs: Annotated[StrictInt, Field(ge=1)] = 1
    seed: StrictInt | None = None
    early_stopping: EarlyStopping | None = None
    checkpoint_every: Annotated[StrictInt, Field(ge=1)] | None = Field(
        default=None, description="also checkpoint every N optimizer steps inside an epoch"
    )
    learning_rate_schedule: KerasObject | None = None
    class_weight: Literal["balanced"] | dict[StrictInt | StrictStr, Annotated[Number, Field(ge=0)]] | None = Field(
        default=None,
        description="balanced: n_samples / (n_classes * count) per class, as scikit-learn computes it; "
        "or a weight per class id (or class name)",
    )
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = Field(
        default="float32",
        description="Keras dtype policy: mixed_* computes in 16 bits, keeps float32 weights "
        "(mixed_float16 scales the loss)",
    )


class DistributeSection(Section):
    strategy: Literal["auto", "one_device", "mirrored", "multi_worker"] = "auto"
    devices: list[StrictStr] | None = None
    virtual_cpus: Annotated[StrictInt, Field(ge=1)] | None = None
    timeout: Annotated[Number, Field(gt=0)] = Field(default=120, description="seconds to wait for multi-worker peers")


class FreezeSection(Section):
    all_but_last: Annotated[StrictInt, Field(ge=0)] | None = None
    layers: list[StrictStr] = Field(default_factory=list, description="names or globs to freeze")
    unfreeze: list[StrictStr] = Field(default_factory=list, description="names or globs to keep trainable")


class FineTuneSection(Section):
    """Phase two of transfer learning: unfreeze the top of the pretrained base, train at a low learning rate."""

    layers: Annotated[StrictInt, Field(ge=1)] = Field(description="unfreeze the top N layers of the base")
    epochs: Annotated[StrictInt, Field(ge=1)] = 1
    learning_rate: Annotated[Number, Field(gt=0)] = 1e-5
    batchnorm: Literal["frozen", "trainable"] = Field(
        default="frozen", description="frozen: BatchNormalization layers stay in inference mode (recommended)"
    )


class TransferSection(Section):
    """The guide's transfer-learning blueprints (see seq transfer)."""

    weights: StrictStr | None = Field(
        default=None, description="pretrained weights of the whole model (.weights.h5 or .keras), loaded when built"
    )
    base: StrictStr | None = Field(default=None, description="layer name of the pretrained base (default: the one)")
    epochs: Annotated[StrictInt, Field(ge=1)] | None = Field(default=None, description="phase one epochs")
    fine_tune: FineTuneSection | None = None


def _size(value: str | int) -> str | int:
    from seqcli.budget import parse_size

    parse_size(value)  # ValueError: reported at the value's position
    return value


Size = Annotated[Union[StrictStr, StrictInt], AfterValidator(_size)]


class ModelExpect(Section):
    output: list[StrictInt | None] | None = None
    params: Annotated[StrictInt, Field(ge=0)] | None = None
    max_params: Annotated[StrictInt, Field(ge=0)] | None = None
    trainable_params: Annotated[StrictInt, Field(ge=0)] | None = None
    max_memory: Size | None = Field(
        default=None, description="the most memory training may need (seq's estimate), e.g. 2G or 512M"
    )


Scalar = Union[StrictBool, StrictInt, StrictFloat, StrictStr, None]
Bounds = Annotated[list[Number], Field(min_length=2, max_length=2)]


class ChoiceRange(Section):
    choice: Annotated[list[Scalar], Field(min_length=1, description="the values to try")]


class UniformRange(Section):
    uniform: Bounds = Field(description="[low, high]: floats drawn uniformly")


class LogUniformRange(Section):
    loguniform: Bounds = Field(description="[low, high]: floats drawn uniformly on a log scale (both > 0)")


class IntRange(Section):
    int_: Annotated[list[StrictInt], Field(min_length=2, max_length=2)] = Field(
        alias="int", description="[low, high]: integers, both included"
    )


RANGE_KINDS = ("choice", "uniform", "loguniform", "int")


def _range_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in RANGE_KINDS:
        return next(iter(value))
    if isinstance(value, BaseModel):
        return {ChoiceRange: "choice", UniformRange: "uniform", LogUniformRange: "loguniform", IntRange: "int"}.get(
            type(value)
        )
    return None


ParameterRange = Annotated[
    Union[
        Annotated[ChoiceRange, Tag("choice")],
        Annotated[UniformRange, Tag("uniform")],
        Annotated[LogUniformRange, Tag("loguniform")],
        Annotated[IntRange, Tag("int")],
    ],
    Discriminator(
        _range_kind,
        custom_error_type="range",
        custom_error_message="expected one of {choice: [...]}, {uniform: [low, high]}, "
        "{loguniform: [low, high]}, {int: [low, high]}",
    ),
]
SamplerName = Literal["tpe", "random", "grid"]
PrunerName = Literal["median", "hyperband", "none"]


class TuneSection(Section):
    """Hyperparameter search (seq tune): which spec values to vary, how to search, what to optimize."""

    objective: StrictStr = Field(default="val_loss", description="a column of history.csv")
    direction: Literal["auto", "minimize", "maximize"] = Field(
        default="auto", description="auto: the way the objective's metric goes in Keras (a loss down)"
    )
    trials: Annotated[StrictInt, Field(ge=1)] = 20
    sampler: SamplerName | dict[SamplerName, dict[StrictStr, Any] | None] = Field(
        default="tpe", description="tpe | random | grid, or {tpe: {n_startup_trials: 5}} with Optuna's arguments"
    )
    pruner: PrunerName | dict[PrunerName, dict[StrictStr, Any] | None] = Field(
        default="median", description="median | hyperband | none, or {median: {n_startup_trials: 2}}"
    )
    epochs: Annotated[StrictInt, Field(ge=1)] | None = Field(default=None, description="per trial (else train.epochs)")
    seed: StrictInt | None = Field(default=None, description="the sampler's seed (else train.seed, else 0)")
    parameters: Annotated[dict[StrictStr, ParameterRange], Field(min_length=1)] = Field(
        description="keys are the paths --set accepts, e.g. layers[1].Dense.units: {choice: [32, 64]}"
    )


# ----------------------------------------------------------------------------- the sections, declared once

ALL_KEYS: Literal["all"] = "all"  # a resume may change anything in the section
Changes = tuple[str, ...] | Literal["all"]


@dataclass(frozen=True)
class Declaration:
    """What a section declares besides its type and its keys (its model's fields): the keys a resumed run
    (``seq train --resume``) and a continued study (``seq tune --resume``) may change, :data:`ALL_KEYS` for the
    whole section. Every other key of the spec enters the fingerprint that decides whether they may continue
    (:mod:`seqcli.specfile.fingerprint`). ``description``: the section's, for the JSON Schema."""

    run_may_change: Changes
    study_may_change: Changes
    description: str | None = None


def section(
    *, run_may_change: Changes, study_may_change: Changes, defaults: type[Section] | None = None, **described: str
) -> Any:
    """A spec section's field: absent (None) when the spec leaves it out, or its ``defaults`` model."""
    metadata = {Declaration: Declaration(run_may_change, study_may_change, **described)}
    if defaults is None:
        return field(default=None, metadata=metadata)
    return field(default_factory=defaults, metadata=metadata)


@dataclass(kw_only=True)
class SpecSections:
    """The spec's sections beside ``name`` and ``layers``, in the order the schema lists them: each one's type,
    whether a spec without it gets its defaults, and what a resume may change. Everything else about sections
    (the top-level keys, their validation and schema, the fingerprints) is derived from these fields."""

    compile: CompileSection | None = section(run_may_change=(), study_may_change=())
    data: DataSection | None = section(run_may_change=(), study_may_change=())
    train: TrainSection = section(
        run_may_change=("epochs", "checkpoint_every"), study_may_change=(), defaults=TrainSection
    )
    distribute: DistributeSection = section(run_may_change=ALL_KEYS, study_may_change=(), defaults=DistributeSection)
    freeze: FreezeSection | None = section(run_may_change=(), study_may_change=())
    transfer: TransferSection | None = section(run_may_change=(), study_may_change=())
    expect: ModelExpect | None = section(
        run_may_change=(),
        study_may_change=(),
        description="whole-model checks for CI: output shape, params, max_params, max_memory",
    )
    tune: TuneSection | None = section(run_may_change=(), study_may_change=("trials",))


@dataclass(frozen=True)
class SpecSection:
    """One section as :class:`SpecSections` declares it."""

    name: str
    model: type[Section]
    defaulted: bool  # a spec without it gets its defaults (else None)
    declaration: Declaration

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.model.model_fields)

    def may_change(self, kind: Literal["run", "study"]) -> Changes:
        return self.declaration.run_may_change if kind == "run" else self.declaration.study_may_change


def declared_sections(table: type = SpecSections) -> dict[str, SpecSection]:
    """Each field of ``table`` as the section it declares; a TypeError for a field not declared with
    :func:`section`, or one that names keys its section does not have."""
    hints = typing.get_type_hints(table)
    found = {}
    for spec_field in fields(table):
        declaration = spec_field.metadata.get(Declaration)
        if not isinstance(declaration, Declaration):
            raise TypeError(f"section {spec_field.name!r} is not declared with section()")
        model = _model_of(hints[spec_field.name])
        if model is None:
            raise TypeError(f"section {spec_field.name!r} is not typed by a section model")
        found[spec_field.name] = SpecSection(spec_field.name, model, spec_field.default is not None, declaration)
        for kind in ("run", "study"):
            changes = found[spec_field.name].may_change(kind)  # type: ignore[arg-type]
            unknown = [] if changes == ALL_KEYS else [key for key in changes if key not in model.model_fields]
            if unknown:
                raise TypeError(f"section {spec_field.name!r} declares unknown keys a {kind} may change: {unknown}")
    return found


def _model_of(annotation: Any) -> type[Section] | None:
    """The section model of an annotation: ``TrainSection`` or ``CompileSection | None``."""
    candidates = [annotation, *typing.get_args(annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, Section)), None)


SPEC_SECTIONS: dict[str, SpecSection] = declared_sections()
SECTIONS: dict[str, type[Section]] = {name: declared.model for name, declared in SPEC_SECTIONS.items()}
