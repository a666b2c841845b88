"""Typed tables for the spec's non-layer sections: compile, data, train, distribute, freeze, transfer.

Plain pydantic models (no TensorFlow): they validate the YAML's plain data, give
positions through their error locations, and publish the JSON Schema.
"""

from __future__ import annotations

import difflib
import typing
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

# A Keras object named the way layers are: "adam", or {Adam: {learning_rate: 1e-3}}.
KerasObject = Union[StrictStr, dict[StrictStr, dict[StrictStr, Any] | None]]
Number = Union[StrictInt, StrictFloat]
KerasDataset = Literal["mnist", "fashion_mnist", "cifar10", "cifar100"]
BundledDataset = Literal["breast_cancer", "wine", "iris", "digits", "diabetes"]  # inside scikit-learn's wheel
KERAS_DATASET_NAMES: tuple[str, ...] = typing.get_args(KerasDataset)
DATASET_NAMES: tuple[str, ...] = KERAS_DATASET_NAMES + typing.get_args(BundledDataset)


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
    dataset: KerasDataset | BundledDataset | None = None
    format: Literal["npz", "npy", "csv", "images", "text", "tfrecord"] | None = None
    compression: Literal["GZIP", "ZLIB", "none"] | None = Field(
        default=None, description="of TFRecord files (default: none)"
    )
    split: Literal["train", "test"] = "train"
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


SECTIONS: dict[str, type[Section]] = {
    "compile": CompileSection,
    "data": DataSection,
    "train": TrainSection,
    "distribute": DistributeSection,
    "freeze": FreezeSection,
    "transfer": TransferSection,
    "expect": ModelExpect,
    "tune": TuneSection,
}
