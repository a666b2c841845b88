"""A table of bad specs and the exact report each gets: what, where (file:line:col), how to fix."""

import pytest

from seqcli.verbs.report import inspect_spec
from seqcli.views.render import problems_text

ALIAS_BOMB = (
    "\n".join(
        ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
        + [f"{c}: &{c} [{', '.join(['*' + p] * 10)}]" for p, c in zip("abcde", "bcdef")]
    )
    + "\nlayers: [*f]\n"
)

ALIAS_DEPTH = (
    "a0: &a0 x\n" + "".join(f"a{i}: &a{i} {'[' * 30}*a{i - 1}{']' * 30}\n" for i in range(1, 61)) + "layers: [*a60]\n"
)

CASES = [
    ("empty file", ""),
    ("only comments", "# nothing here\n"),
    ("bare scalar", "just words\n"),
    ("top-level list", "- Dense: {units: 1}\n"),
    ("duplicate top-level key", "layers:\n  - Dense: {units: 1}\nlayers:\n  - Dense: {units: 2}\n"),
    ("duplicate argument", "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1, units: 2}\n"),
    ("python tag", "layers:\n  - Dense: !!python/object/apply:os.system [echo hi]\n"),
    ("custom tag", "layers:\n  - Dense: {units: !int 3}\n"),
    ("alias bomb", ALIAS_BOMB),
    ("aliases nesting deep", ALIAS_DEPTH),
    ("self-referencing alias", "layers: &l\n  - Dense: {units: 1}\n  - *l\n"),
    ("deep nesting", "layers: " + "[" * 500 + "]" * 500 + "\n"),
    ("two documents", "layers:\n  - Dense: {units: 1}\n---\nlayers: []\n"),
    ("not UTF-8", b"layers:\n  - Dense: {units: 1, name: caf\xe9}\n"),
    ("unclosed bracket", "layers:\n  - Dense: {units: 1\n"),
    ("tab indentation", "layers:\n\t- Dense: {units: 1}\n"),
    ("merge key", "base: &b {units: 1}\nlayers:\n  - Dense: {<<: *b}\n"),
    ("missing layers", "name: empty\n"),
    ("empty layers", "layers: []\n"),
    ("layers not a list", "layers: {Dense: {units: 1}}\n"),
    ("entry is a bare name", "layers:\n  - Input: {shape: [4]}\n  - Flatten\n"),
    ("arguments mis-indented", "layers:\n  - Dense:\n    units: 3\n"),
    ("arguments not a mapping", "layers:\n  - Input: {shape: [4]}\n  - Dense: 10\n"),
    ("unknown top-level key", "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1}\ncomplie: {loss: mse}\n"),
    ("bad model name", "name: my model\nlayers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1}\n"),
    ("expect not a shape", "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1}\n    expect: one\n"),
    ("yes for a boolean", "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1, use_bias: yes}\n"),
    ("unknown compile key", "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1}\ncompile:\n  optimiser: adam\n"),
    ("quoted batch size", "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1}\ndata:\n  batch_size: '64'\n"),
    (
        "validation fraction too big",
        "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1}\ndata:\n  train: x.npz\n  validation: 1.5\n",
    ),
    ("no for a number", "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1}\ntrain:\n  epochs: no\n"),
    ("strategy typo", "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1}\ndistribute:\n  strategy: mirorred\n"),
    ("unknown layer class", "layers:\n  - Input: {shape: [4]}\n  - Dens: {units: 1}\n"),
    ("unknown argument", "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1, activaton: relu}\n"),
    ("missing required argument", "layers:\n  - Input: {shape: [4]}\n  - Dense: {activation: relu}\n"),
    ("Keras rejects a value", "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: -3}\n"),
    ("Lambda is not allowed", "layers:\n  - Input: {shape: [4]}\n  - Lambda: {function: print}\n"),
    ("multi-input layer", "layers:\n  - Input: {shape: [4]}\n  - MultiHeadAttention: {num_heads: 2, key_dim: 2}\n"),
    ("Input not first", "layers:\n  - Dense: {units: 1}\n  - Input: {shape: [4]}\n"),
    ("Input without a shape", "layers:\n  - Input: {}\n  - Dense: {units: 1}\n"),
    ("shape does not fit", "layers:\n  - Input: {shape: [4]}\n  - Conv2D: {filters: 2, kernel_size: 3}\n"),
    (
        "layer expect mismatch",
        "layers:\n  - Input: {shape: [8, 8, 1]}\n  - Conv2D: {filters: 2, kernel_size: 3}\n    expect: [8, 8, 2]\n",
    ),
    (
        "model expect mismatch",
        "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3}\nexpect:\n  output: [2]\n"
        "  params: 16\n  max_params: 10\n",
    ),
    (
        "duplicate layer names",
        "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3, name: a}\n  - Dense: {units: 3, name: a}\n",
    ),
    (
        "unknown initializer",
        "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3, kernel_initializer: {GlorotUnifrom: {seed: 1}}}\n",
    ),
    ("input_shape on a later layer", "layers:\n  - Dense: {units: 3}\n  - Dense: {units: 3, input_shape: [4]}\n"),
    (
        "several problems at once",
        "layers:\n  - Input: {shape: [4]}\n  - Dense: {unit: 3}\n  - Dropuot: {rate: 0.5}\ntrain:\n  epochs: 0\n",
    ),
]

EXPECTED = {
    "aliases nesting deep": (
        "spec.yaml:4:34: aliases nest deeper than 64 levels\n"
        "    a3: &a3 [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*a2]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"
        "                                     ^\n"
        "  hint: write the values out instead of nesting aliases"
    ),
    "empty file": ("spec.yaml:1:1: spec is empty\n  hint: a spec is a mapping with at least 'layers:'"),
    "only comments": (
        "spec.yaml:1:1: spec is empty\n    # nothing here\n    ^\n  hint: a spec is a mapping with at least 'layers:'"
    ),
    "bare scalar": (
        "spec.yaml:1:1: a spec must be a mapping at the top level, got str\n"
        "    just words\n"
        "    ^\n"
        "  hint: start with 'layers:' followed by a list of layers"
    ),
    "top-level list": (
        "spec.yaml:1:1: a spec must be a mapping at the top level, got list\n"
        "    - Dense: {units: 1}\n"
        "    ^\n"
        "  hint: start with 'layers:' followed by a list of layers"
    ),
    "duplicate top-level key": (
        "spec.yaml:3:1: layers: duplicate key 'layers' (first defined on line 1)\n"
        "    layers:\n"
        "    ^\n"
        "  hint: YAML keeps only one of them; remove or rename one"
    ),
    "duplicate argument": (
        "spec.yaml:3:23: layers[1].Dense.units: duplicate key 'units' (first defined on line 3)\n"
        "    - Dense: {units: 1, units: 2}\n"
        "                        ^\n"
        "  hint: YAML keeps only one of them; remove or rename one"
    ),
    "python tag": (
        "spec.yaml:2:12: layers[0].Dense: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed in a spec\n"
        "    - Dense: !!python/object/apply:os.system [echo hi]\n"
        "             ^\n"
        "  hint: remove the tag; specs hold plain values only"
    ),
    "custom tag": (
        "spec.yaml:2:20: layers[0].Dense.units: YAML tag '!int' is not allowed in a spec\n"
        "    - Dense: {units: !int 3}\n"
        "                     ^\n"
        "  hint: remove the tag; specs hold plain values only"
    ),
    "alias bomb": (
        "spec.yaml:5:4: aliases expand to more than 100,000 values\n"
        "    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        "       ^\n"
        "  hint: write the values out instead of nesting aliases"
    ),
    "self-referencing alias": (
        "spec.yaml:1:9: an alias refers to the node that contains it\n"
        "    layers: &l\n"
        "            ^\n"
        "  hint: aliases must point to a finished anchor"
    ),
    "deep nesting": (
        "spec.yaml:1:72: nesting deeper than 64 levels\n"
        "    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n"
        "                                            ^"
    ),
    "two documents": (
        "spec.yaml:3:1: a spec holds one YAML document; found a second '---'\n"
        "    ---\n"
        "    ^\n"
        "  hint: put each model in its own file"
    ),
    "not UTF-8": ("spec.yaml:2:32: invalid UTF-8 byte 0xe9\n  hint: save the file as UTF-8"),
    "unclosed bracket": (
        "spec.yaml:3:1: invalid YAML: expected ',' or '}', but got '<stream end>'\n"
        "  hint: while parsing a flow mapping that starts at line 2, column 12"
    ),
    "tab indentation": (
        "spec.yaml:2:1: invalid YAML: found character '\\t' that cannot start any token\n"
        "    \t- Dense: {units: 1}\n"
        "    ^\n"
        "  hint: indent with spaces: YAML does not allow tabs"
    ),
    "merge key": (
        "spec.yaml:3:13: layers[0].Dense: merge keys ('<<') are not supported\n"
        "    - Dense: {<<: *b}\n"
        "              ^\n"
        "  hint: write the keys out"
    ),
    "missing layers": (
        "spec.yaml:1:1: missing 'layers'\n"
        "    name: empty\n"
        "    ^\n"
        "  hint: add 'layers:' with a list such as '- Dense: {units: 10}'"
    ),
    "empty layers": (
        "spec.yaml:1:9: layers: 'layers' must be a non-empty list\n"
        "    layers: []\n"
        "            ^\n"
        "  hint: each item looks like '- Dense: {units: 10}'"
    ),
    "layers not a list": (
        "spec.yaml:1:9: layers: 'layers' must be a non-empty list\n"
        "    layers: {Dense: {units: 1}}\n"
        "            ^\n"
        "  hint: each item looks like '- Dense: {units: 10}'"
    ),
    "entry is a bare name": (
        "spec.yaml:3:5: layers[1]: a layer entry must be a mapping like 'Dense: {units: 10}', got 'Flatten'\n"
        "    - Flatten\n"
        "      ^\n"
        "  hint: write the class name followed by a colon: '- Flatten: {}'"
    ),
    "arguments mis-indented": (
        "spec.yaml:2:5: layers[0]: a layer entry needs exactly one layer class, found Dense, units\n"
        "    - Dense:\n"
        "      ^\n"
        "  hint: is the indentation off? arguments go inside the class mapping, e.g. '- Dense: {units: 10}'"
    ),
    "arguments not a mapping": (
        "spec.yaml:3:12: layers[1].Dense: arguments of Dense must be a mapping, got 10\n"
        "    - Dense: 10\n"
        "             ^\n"
        "  hint: write 'Dense: {...}' with keyword arguments, or 'Dense: {}'"
    ),
    "unknown top-level key": (
        "spec.yaml:4:1: complie: unknown top-level key 'complie'\n"
        "    complie: {loss: mse}\n"
        "    ^\n"
        "  hint: did you mean 'compile'?"
    ),
    "bad model name": (
        "spec.yaml:1:7: name: model name must be an identifier, got 'my model'\n"
        "    name: my model\n"
        "          ^\n"
        "  hint: use letters, digits and underscores, e.g. my_sequential_model"
    ),
    "expect not a shape": (
        "spec.yaml:4:13: layers[1].expect: expected a shape such as [40, 40, 32] (null for any size), got 'one'\n"
        "    expect: one\n"
        "            ^\n"
        "  hint: give the output shape without the batch dimension"
    ),
    "yes for a boolean": (
        "spec.yaml:3:33: layers[1].Dense.use_bias: ambiguous value 'yes'\n"
        "    - Dense: {units: 1, use_bias: yes}\n"
        "                                  ^\n"
        "  hint: write true or false for a boolean, or quote it ('yes') if you mean the string"
    ),
    "unknown compile key": (
        "spec.yaml:5:3: compile.optimiser: unknown key 'optimiser'\n"
        "    optimiser: adam\n"
        "    ^\n"
        "  hint: did you mean 'optimizer'?"
    ),
    "quoted batch size": (
        "spec.yaml:5:15: data.batch_size: input should be a valid integer; received '64'\n"
        "    batch_size: '64'\n"
        "                ^\n"
        "  hint: remove the quotes to make it a number"
    ),
    "validation fraction too big": (
        "spec.yaml:6:15: data.validation: input should be less than 1; received 1.5\n"
        "    validation: 1.5\n"
        "                ^"
    ),
    "no for a number": (
        "spec.yaml:5:11: train.epochs: input should be a valid integer; received 'no'\n"
        "    epochs: no\n"
        "            ^\n"
        "  hint: YAML 1.2 reads no as the string 'no', not a boolean"
    ),
    "strategy typo": (
        "spec.yaml:5:13: distribute.strategy: input should be 'auto', 'one_device', 'mirrored' or 'multi_worker'; received 'mirorred'\n"
        "    strategy: mirorred\n"
        "              ^\n"
        "  hint: did you mean 'mirrored'?"
    ),
    "unknown layer class": (
        "spec.yaml:3:5: layers[1].Dens: unknown layer class 'Dens'\n"
        "    - Dens: {units: 1}\n"
        "      ^\n"
        "  hint: did you mean 'Dense'?"
    ),
    "unknown argument": (
        "spec.yaml:3:23: layers[1].Dense.activaton: unknown argument for Dense\n"
        "    - Dense: {units: 1, activaton: relu}\n"
        "                        ^\n"
        "  hint: did you mean 'activation'?"
    ),
    "missing required argument": (
        "spec.yaml:3:5: layers[1].Dense: Dense needs units\n"
        "    - Dense: {activation: relu}\n"
        "      ^\n"
        "  hint: add units: ... to its arguments"
    ),
    "Keras rejects a value": (
        "spec.yaml:3:5: layers[1].Dense: Keras rejected Dense: Received an invalid value for `units`, expected a positive integer. Received: units=-3\n"
        "    - Dense: {units: -3}\n"
        "      ^\n"
        "  hint: check the arguments against the Keras documentation of this layer"
    ),
    "Lambda is not allowed": (
        "spec.yaml:3:5: layers[1].Lambda: Lambda cannot be used in a spec: it runs arbitrary Python code\n"
        "    - Lambda: {function: print}\n"
        "      ^"
    ),
    "multi-input layer": (
        "spec.yaml:3:5: layers[1].MultiHeadAttention: MultiHeadAttention cannot be used in a spec: it takes several inputs, which a Sequential model cannot give it\n"
        "    - MultiHeadAttention: {num_heads: 2, key_dim: 2}\n"
        "      ^"
    ),
    "Input not first": (
        "spec.yaml:3:5: layers[1].Input: Input must be the first entry of 'layers'\n"
        "    - Input: {shape: [4]}\n"
        "      ^\n"
        "  hint: move it to the top, or remove it"
    ),
    "Input without a shape": (
        "spec.yaml:2:12: layers[0].Input: Input needs a shape\n"
        "    - Input: {}\n"
        "             ^\n"
        "  hint: write 'Input: {shape: [28, 28, 1]}'"
    ),
    "shape does not fit": (
        "spec.yaml:3:5: layers[1].Conv2D: Conv2D cannot take input of shape (None, 4): Input 0 with name 'None' of layer 'conv2d' is incompatible with the layer: expected min_ndim=4, found ndim=2. Full shape received: (None, 4)\n"
        "    - Conv2D: {filters: 2, kernel_size: 3}\n"
        "      ^\n"
        "  hint: check the previous layers' output shapes with 'seq summary --upto'"
    ),
    "layer expect mismatch": (
        "spec.yaml:4:13: layers[1].expect: expected output shape (8, 8, 2), built (6, 6, 2)\n"
        "    expect: [8, 8, 2]\n"
        "            ^\n"
        "  hint: update 'expect' if the new shape is intended"
    ),
    "model expect mismatch": (
        "spec.yaml:5:11: expect.output: expected model output (2,), built (3,)\n"
        "    output: [2]\n"
        "            ^\n"
        "spec.yaml:6:11: expect.params: expected 16 parameters, built 15\n"
        "    params: 16\n"
        "            ^\n"
        "spec.yaml:7:15: expect.max_params: model has 15 parameters, over the limit of 10\n"
        "    max_params: 10\n"
        "                ^"
    ),
    "duplicate layer names": (
        "spec.yaml:4:29: layers[2].Dense.name: layer name 'a' is already used by layers[1]\n"
        "    - Dense: {units: 3, name: a}\n"
        "                              ^\n"
        "  hint: layer names in a model must be unique"
    ),
    "unknown initializer": (
        "spec.yaml:3:44: layers[1].Dense.kernel_initializer.GlorotUnifrom: unknown initializer 'GlorotUnifrom'\n"
        "     Dense: {units: 3, kernel_initializer: {GlorotUnifrom: {seed: 1}}}\n"
        "                                            ^\n"
        "  hint: did you mean 'GlorotUniform'?"
    ),
    "input_shape on a later layer": (
        "spec.yaml:3:23: layers[1].Dense.input_shape: input_shape only takes effect on the first layer\n"
        "    - Dense: {units: 3, input_shape: [4]}\n"
        "                        ^\n"
        "  hint: remove it, or move the shape to an 'Input' entry at the top"
    ),
    "several problems at once": (
        "spec.yaml:3:5: layers[1].Dense: Dense needs units\n"
        "    - Dense: {unit: 3}\n"
        "      ^\n"
        "  hint: add units: ... to its arguments\n"
        "spec.yaml:3:13: layers[1].Dense.unit: unknown argument for Dense\n"
        "    - Dense: {unit: 3}\n"
        "              ^\n"
        "  hint: did you mean 'units'?\n"
        "spec.yaml:4:5: layers[2].Dropuot: unknown layer class 'Dropuot'\n"
        "    - Dropuot: {rate: 0.5}\n"
        "      ^\n"
        "  hint: did you mean 'Dropout'?\n"
        "spec.yaml:6:11: train.epochs: input should be greater than or equal to 1; received 0\n"
        "    epochs: 0\n"
        "            ^"
    ),
}


@pytest.mark.parametrize("name, text", CASES, ids=[c[0] for c in CASES])
def test_bad_spec_report(tmp_path, monkeypatch, name, text):
    expected = EXPECTED[name]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    report = inspect_spec("spec.yaml")
    assert not report.ok
    assert problems_text(report) == expected


def test_one_broken_spec_does_not_stop_the_others(tmp_path, monkeypatch):
    """A Keras error type seq does not expect still lands on that spec's entry, and check goes on."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text("layers:\n  - Input: {shape: [4], dtype: foo}\n  - Dense: {units: 2}\n")
    (tmp_path / "b.yaml").write_text(
        "layers:\n  - Input: {shape: [8, 8, 1]}\n  - Conv2D: {filters: 2, kernel_size: 3, padding: 5}\n"
    )
    a, b = inspect_spec("a.yaml"), inspect_spec("b.yaml")
    assert (
        problems_text(a).splitlines()[0] == "a.yaml:2:5: layers[0].Input: Keras rejected the input: Invalid dtype: foo"
    )
    assert problems_text(b).splitlines()[0] == (
        "b.yaml:3:5: layers[1].Conv2D: Keras rejected Conv2D: 'int' object has no attribute 'lower'"
    )


def test_a_device_file_is_not_read(tmp_path, monkeypatch):
    """/dev/zero would never end: refused before reading, as is anything that is not a regular file."""
    report = inspect_spec("/dev/zero")
    assert problems_text(report) == "/dev/zero: is a character device, not a regular file\n  hint: pass a .yaml file"
