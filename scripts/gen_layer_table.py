"""Regenerate seqcli/spec/keras_layers.json: layer classes and their keyword arguments, read from Keras.

`seq schema` publishes these without importing TensorFlow; tests/test_schema.py fails when the
table no longer matches the installed Keras, and this script brings it back in line:

    python scripts/gen_layer_table.py
"""

import json
from pathlib import Path

from seqcli import applications, registry
from seqcli.keras_env import import_keras

TABLE = Path(__file__).resolve().parents[1] / "seqcli" / "spec" / "keras_layers.json"


def layer_table() -> dict:
    keras = import_keras()
    layers = {name: sorted(registry.accepted_arguments(cls)[0]) for name, cls in registry.layer_classes().items()}
    bases = {name: sorted(applications.application_arguments(name)) for name in applications.APPLICATIONS}
    bases[applications.SAVED_MODEL] = list(applications.SAVED_MODEL_ARGUMENTS)
    return {
        "keras_version": keras.__version__,
        "Input": list(registry.INPUT_ARGUMENTS),
        "layers": layers,
        "bases": bases,
    }


if __name__ == "__main__":
    TABLE.write_text(json.dumps(layer_table(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {TABLE}")
