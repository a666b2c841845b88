"""Pretrained bases in a spec (a ``keras.applications`` model or ``Model: {path: ...}``): their arguments are
checked with the other entries, and the base is made once the tensor reaching it is known."""

from __future__ import annotations

from dataclasses import dataclass

from seqcli import applications
from seqcli.budget import LimitError
from seqcli.errors import SeqError, clean_message, did_you_mean
from seqcli.modelbuild.context import BuildContext
from seqcli.models import ModelLoadError, NotAModelError
from seqcli.specfile import LayerEntry


@dataclass
class PendingBase:
    """A base entry whose arguments are checked; it is made when its input shape is known."""

    entry: LayerEntry
    args: dict

    @property
    def name(self) -> str | None:
        return self.args.get("name")


def check_base(context: BuildContext, entry: LayerEntry) -> PendingBase | None:
    """Check a base entry's arguments; the base itself is made once its input shape is known."""
    name, path = entry.class_name, entry.path + (entry.class_name,)
    is_application = name in applications.APPLICATIONS
    accepted = applications.application_arguments(name) if is_application else applications.SAVED_MODEL_ARGUMENTS
    ok = True
    for key, value in entry.args.items():
        if key in applications.SUPPLIED_ARGUMENTS and is_application:
            context.problem(
                path + (key,),
                f"{key} is not given in a spec",
                f"{name} takes its input from the entry before it",
                key=True,
            )
            ok = False
        elif key not in accepted:
            context.problem(
                path + (key,),
                f"unknown argument for {name}",
                did_you_mean(key, accepted) or f"{name} accepts: {', '.join(sorted(accepted))}",
                key=True,
            )
            ok = False
        elif isinstance(value, dict):
            context.problem(path + (key,), f"{key} does not take a mapping", "give a plain value")
            ok = False
    if entry.index > 0 and "input_shape" in entry.args and context.spec.layers[0] is not entry:
        context.problem(
            path + ("input_shape",),
            "input_shape only takes effect on the first layer",
            "remove it: a base takes its input shape from the entry before it",
            key=True,
        )
        ok = False
    found = (
        applications.weights_problems(name, entry.args.get("weights"), context.spec.base_dir)
        if is_application
        else applications.saved_model_problems(entry.args, context.spec.base_dir)
    )
    _base_problems(context, entry, found)
    if not ok or found:
        return None
    args = {k: tuple(v) if k == "input_shape" and isinstance(v, list) else v for k, v in entry.args.items()}
    return PendingBase(entry, args)


def _base_problems(context: BuildContext, entry: LayerEntry, problems: list) -> None:
    path = entry.path + (entry.class_name,)
    for found in problems:
        if found.key is not None and found.key in entry.args:
            context.problem(path + (found.key,), found.message, found.hint)
        else:
            context.problem(path, found.message, found.hint, key=True)


def realize_base(context: BuildContext, entry: LayerEntry, pending: PendingBase, tensor):
    """Make a base for its incoming tensor; None (with a problem at the entry) when it cannot be made."""
    shape = tuple(tensor.shape[1:]) if tensor is not None else pending.args.get("input_shape")
    name, path = entry.class_name, entry.path + (entry.class_name,)
    base_dir = context.spec.base_dir
    try:
        if name == applications.SAVED_MODEL:
            return applications.load_saved_model(pending.args, abstract=context.abstract, base_dir=base_dir)
        found = applications.shape_problems(name, pending.args, shape)
        _base_problems(context, entry, found)
        if found:
            return None
        return applications.construct_application(
            name, pending.args, shape, abstract=context.abstract, base_dir=base_dir
        )
    except applications.WeightsDownloadError as error:
        weights_path = path + ("weights",) if "weights" in entry.args else path
        context.problem(weights_path, error.message, error.hint, key="weights" not in entry.args)
    except NotAModelError as error:
        context.problem(path, error.message, error.hint, key=True)
    except ModelLoadError as error:
        context.problem(path, f"Keras could not make {name}: {error.message}", error.hint, key=True)
    except LimitError as error:  # a file over the limits, or damaged: the entry is its position, not its prefix
        context.problem(path, error.detail, error.hint, key=True)
    except SeqError as error:
        context.problem(path, error.message, error.hint, key=True)
    except Exception as error:  # Keras raises ValueError, TypeError, OSError... for a base it cannot make
        context.problem(
            path,
            f"Keras could not make {name}: {clean_message(error)}",
            "check the arguments against the Keras documentation of this model",
            key=True,
        )
    return None
