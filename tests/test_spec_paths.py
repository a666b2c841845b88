"""A spec reads no file outside its folder (unless --allow-path / SEQ_ALLOW_PATH widen it), and no
command echoes a file's contents or the environment, in any output format."""

import os

import pytest

from seqcli.specfile.paths import LAYER_FILE_CAP
from tests.conftest import run_seq as run

SECRET_FILE_TEXT = "TOPSECRETFILECONTENT"
SECRET_ENV_VALUE = "TOPSECRETENVVALUE"
HINT = (
    "  hint: a spec reads files inside its own folder only; move the file there, or allow a folder with "
    "--allow-path DIR (or SEQ_ALLOW_PATH in CI)"
)
HEAD = "layers:\n  - Input: {shape: [1], dtype: int64}\n"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A spec folder, and beside it a folder holding a secret; a secret in the environment too."""
    monkeypatch.setenv("SEQ_TEST_SECRET", SECRET_ENV_VALUE)
    monkeypatch.delenv("SEQ_ALLOW_PATH", raising=False)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(f"{SECRET_FILE_TEXT}\n{SECRET_FILE_TEXT}2\n")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "inside.txt").write_text(f"{SECRET_FILE_TEXT}\n")
    (tmp_path / "specs" / "link.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    return tmp_path


LEAKY_SPECS = {
    "proc environ": HEAD + "  - IntegerLookup: {vocabulary: /proc/self/environ}\n",
    "escaping vocabulary": HEAD + "  - StringLookup: {vocabulary: ../outside/secret.txt}\n",
    "symlinked vocabulary": HEAD + "  - IntegerLookup: {vocabulary: link.txt}\n",
    "vocabulary inside": HEAD + "  - IntegerLookup: {vocabulary: inside.txt}\n",
    "escaping data": HEAD + "  - Dense: {units: 1}\ncompile: {loss: mse}\ndata: {train: ../outside/secret.txt}\n",
}


def assert_no_secret(result):
    shown = result.stdout + result.stderr
    assert SECRET_FILE_TEXT not in shown and SECRET_ENV_VALUE not in shown, shown
    assert "Traceback" not in shown


@pytest.mark.parametrize("name", LEAKY_SPECS)
@pytest.mark.parametrize("allow", [False, True], ids=["confined", "allowed"])
def test_no_output_of_any_format_echoes_a_file_or_the_environment(project, name, allow):
    spec = project / "specs" / "leaky.yaml"
    spec.write_text(LEAKY_SPECS[name])
    widen = ["--allow-path", project / "outside", "--allow-path", "/proc/self"] if allow else []
    # Allowed, strings read from a file make a fine StringLookup, and check reads no data.
    status = 0 if allow and name in ("escaping vocabulary", "escaping data") else 1
    for fmt in ("text", "json", "junit", "github"):
        result = run("check", spec, "--format", fmt, *widen)
        assert result.exit_code == status, (fmt, result.output)
        assert_no_secret(result)
    for fmt in ("table", "json"):
        result = run("summary", spec, "--format", fmt, *widen)
        assert result.exit_code == status
        assert_no_secret(result)
    if name == "escaping data":
        result = run("train", spec, "--output", project / "run", "--quiet", *widen)
        assert result.exit_code == 1
        assert_no_secret(result)


def test_the_keras_message_of_a_layer_reading_a_file_is_not_shown(project):
    spec = project / "specs" / "leaky.yaml"
    spec.write_text(LEAKY_SPECS["vocabulary inside"])
    result = run("check", spec, "--format", "github")
    assert result.stdout == (
        f"::error file={spec},line=3,col=5::layers[1].IntegerLookup: Keras rejected IntegerLookup: "
        "InvalidArgumentError while using vocabulary file 'inside.txt' (Keras's message is not shown: it may quote "
        "the file's contents) (check the arguments against the Keras documentation of this layer)\n"
    )


REFUSALS = [
    (
        "absolute path",
        "  - IntegerLookup: {vocabulary: /etc/hostname}\n",
        "3:33: layers[1].IntegerLookup.vocabulary: '/etc/hostname' is an absolute path outside the spec's folder",
    ),
    (
        "home folder",
        "  - IntegerLookup: {vocabulary: ~/vocab.txt}\n",
        "3:33: layers[1].IntegerLookup.vocabulary: '~/vocab.txt' is an absolute path outside the spec's folder",
    ),
    (
        "dot-dot escape",
        "  - IntegerLookup: {vocabulary: sub/../../outside/secret.txt}\n",
        "3:33: layers[1].IntegerLookup.vocabulary: 'sub/../../outside/secret.txt' leads out of the spec's folder",
    ),
    (
        "symlink escape",
        "  - IntegerLookup: {vocabulary: link.txt}\n",
        "3:33: layers[1].IntegerLookup.vocabulary: 'link.txt' is a symbolic link that leads out of the spec's folder",
    ),
    (
        "FIFO",
        "  - IntegerLookup: {vocabulary: pipe}\n",
        "3:33: layers[1].IntegerLookup.vocabulary: 'pipe' is a FIFO (named pipe), not a regular file",
    ),
    (
        "device file",
        "  - IntegerLookup: {vocabulary: /dev/zero}\n",
        "3:33: layers[1].IntegerLookup.vocabulary: '/dev/zero' is an absolute path outside the spec's folder",
    ),
    (
        "oversize file",
        "  - IntegerLookup: {vocabulary: big.txt}\n",
        f"3:33: layers[1].IntegerLookup.vocabulary: 'big.txt' is {LAYER_FILE_CAP + 1:,} bytes, over the 64 MiB cap "
        "for files a layer reads",
    ),
    (
        "nested layer",
        "  - Bidirectional: {layer: {LSTM: {units: 2, weights_path: /x}}}\n",
        "3:60: layers[1].Bidirectional.layer.LSTM.weights_path: '/x' is an absolute path outside the spec's folder",
    ),
    (
        "saved model base",
        "  - Model: {path: ../outside/base.keras}\n",
        "3:19: layers[1].Model.path: '../outside/base.keras' leads out of the spec's folder",
    ),
    (
        "application weights",
        "  - MobileNetV2: {weights: /w.weights.h5, include_top: false}\n",
        "3:28: layers[1].MobileNetV2.weights: '/w.weights.h5' is an absolute path outside the spec's folder",
    ),
    (
        "data source",
        "  - Dense: {units: 1}\ndata:\n  train: {path: /data/x.npz}\n",
        "5:17: data.train.path: '/data/x.npz' is an absolute path outside the spec's folder",
    ),
    (
        "labels file",
        "  - Dense: {units: 1}\ndata:\n  test: {path: x.npy, y: ../y.npy}\n",
        "5:26: data.test.y: '../y.npy' leads out of the spec's folder",
    ),
    (
        "transfer weights",
        "  - Dense: {units: 1}\ntransfer:\n  weights: ../w.weights.h5\n",
        "5:12: transfer.weights: '../w.weights.h5' leads out of the spec's folder",
    ),
]


@pytest.mark.parametrize("name, layers, expected", REFUSALS, ids=[case[0] for case in REFUSALS])
def test_files_outside_the_spec_folder_are_refused_with_their_position(project, name, layers, expected):
    os.mkfifo(project / "specs" / "pipe")
    with open(project / "specs" / "big.txt", "wb") as handle:
        handle.truncate(LAYER_FILE_CAP + 1)
    spec = project / "specs" / "spec.yaml"
    spec.write_text(HEAD + layers)
    result = run("check", spec)
    assert result.exit_code == 1
    headline = f"{spec}:{expected}"
    assert headline in result.stderr.splitlines(), result.stderr
    lines = result.stderr.splitlines()
    assert lines[lines.index(headline) + 3] == HINT


def test_urls_are_not_files(project):
    spec = project / "specs" / "spec.yaml"
    spec.write_text(HEAD + "  - StringLookup: {vocabulary: 'gs://bucket/vocab.txt'}\n")
    result = run("check", spec)
    assert (
        f"{spec}:3:32: layers[1].StringLookup.vocabulary: 'gs://bucket/vocab.txt' is a URL; a spec reads local "
        "files only" in result.stderr
    )
    assert "  hint: download the file into the spec's folder" in result.stderr


def test_keras_dataset_names_are_not_paths(project):
    spec = project / "specs" / "spec.yaml"
    spec.write_text(
        "layers:\n  - Input: {shape: [28, 28, 1]}\n  - Flatten: {}\n  - Dense: {units: 10}\n"
        "data: {train: mnist, test: 'mnist:test'}\n"
    )
    assert run("check", spec).exit_code == 0


@pytest.fixture
def outside_vocabulary(project):
    (project / "outside" / "vocab.txt").write_text("1\n2\n3\n")
    spec = project / "specs" / "spec.yaml"
    spec.write_text(
        HEAD + f"  - IntegerLookup: {{vocabulary: {project / 'outside' / 'vocab.txt'}}}\n"
        "  - IntegerLookup: {vocabulary: ../outside/vocab.txt}\n"
    )
    return spec


def test_allow_path_widens_what_a_spec_reads(project, outside_vocabulary):
    assert run("check", outside_vocabulary).exit_code == 1
    result = run("check", outside_vocabulary, "--allow-path", project / "outside")
    assert result.exit_code == 0, result.output
    assert run("summary", outside_vocabulary, "--allow-path", project / "elsewhere").exit_code == 1


def test_the_environment_widens_it_for_ci(project, outside_vocabulary):
    env = {"SEQ_ALLOW_PATH": os.pathsep.join([str(project / "elsewhere"), str(project / "outside")])}
    result = run("check", outside_vocabulary, "--format", "json", env=env)
    assert result.exit_code == 0, result.output


def test_a_value_set_on_the_command_line_is_the_users_choice(project, outside_vocabulary):
    vocabulary = project / "outside" / "vocab.txt"
    result = run(
        "summary",
        outside_vocabulary,
        "--set",
        f"layers[1].IntegerLookup.vocabulary={vocabulary}",
        "--set",
        f"layers[2].IntegerLookup.vocabulary={vocabulary}",
    )
    assert result.exit_code == 0, result.output


def test_every_command_that_reads_a_spec_takes_allow_path():
    for command in ("summary", "check", "train", "transfer", "extract", "freeze", "evaluate"):
        assert "--allow-path DIR" in run(command, "--help").stdout, command


def test_every_file_a_spec_names_can_be_made_absolute(tmp_path):
    from seqcli.specfile.paths import absolute_file_fields

    data = {
        "layers": [
            {"Input": {"shape": [32, 32, 3]}},
            {"MobileNetV2": {"weights": "b.weights.h5"}},
            {"Xception": {"weights": "imagenet"}},
            {"Model": {"path": "sub/m.keras"}},
        ],
        "data": {"train": "d.npz", "test": "mnist:test"},
        "transfer": {"weights": "w.keras", "epochs": 2},
    }
    root = tmp_path.resolve()
    assert absolute_file_fields(data, root) == {
        "layers": [
            {"Input": {"shape": [32, 32, 3]}},
            {"MobileNetV2": {"weights": str(root / "b.weights.h5")}},
            {"Xception": {"weights": "imagenet"}},
            {"Model": {"path": str(root / "sub" / "m.keras")}},
        ],
        "data": {"train": str(root / "d.npz"), "test": "mnist:test"},
        "transfer": {"weights": str(root / "w.keras"), "epochs": 2},
    }
    assert data["transfer"]["weights"] == "w.keras"  # the spec's own data is left as it was
