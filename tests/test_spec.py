"""Job specs from flags and YAML, units, and the metric line protocol."""
from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from modelyard import log_metric
from modelyard.jobs import JobSpec, parse_metric_line
from modelyard.jobs.spec import DEFAULT_MAX_RUNTIME, DEFAULT_SYNC_INTERVAL
from modelyard.jobs.units import parse_duration, parse_size


def test_defaults() -> None:
    spec = JobSpec(command=["python", "train.py"])
    assert spec.max_runtime == DEFAULT_MAX_RUNTIME == 72 * 3600
    assert spec.sync_interval == DEFAULT_SYNC_INTERVAL == 600
    assert spec.name == "python train.py"
    assert spec.argv() == ["python", "train.py"]


def test_shell_string_runs_through_the_shell() -> None:
    spec = JobSpec(command="python train.py | tee x")
    assert spec.argv() == ["/bin/sh", "-c", "python train.py | tee x"]
    assert spec.name == "python train.py | tee x"


def test_flags_override_the_yaml_file() -> None:
    doc = {"command": ["python", "a.py"], "name": "from-file", "gpus": 1, "memory": "4G",
           "env": {"A": "1", "B": "2"}, "max_runtime": "2h", "retries": 2}
    spec = JobSpec.from_sources(doc, {"name": "from-flag", "gpus": 0, "env": {"B": "3"}, "priority": None})
    assert spec.name == "from-flag"
    assert spec.resources.gpus == 0 and spec.resources.memory == 4 * 1024**3
    assert spec.env == {"A": "1", "B": "3"}
    assert spec.max_runtime == 7200 and spec.retries == 2 and spec.priority == 0


@pytest.mark.parametrize(("data", "field"), [
    ({"command": []}, "command"),
    ({"command": "  "}, "command"),
    ({"command": ["x"], "resources": {"gpus": -1}}, "resources.gpus"),
    ({"command": ["x"], "resources": {"memory": "lots"}}, "resources.memory"),
    ({"command": ["x"], "max_runtime": "soon"}, "max_runtime"),
    ({"command": ["x"], "max_runtime": 0}, "max_runtime"),
    ({"command": ["x"], "retries": -1}, "retries"),
    ({"command": ["x"], "webhooks": ["ftp://x"]}, "webhooks"),
    ({"command": ["x"], "colour": "red"}, "colour"),
    ({"command": ["x"], "experiment": " "}, "experiment"),
    ({"command": ["x"], "experiment": "e" * 501}, "experiment"),
    ({"command": ["x"], "experiment": "a\0b"}, "experiment"),
])
def test_bad_specs_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(data)
    locs = [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]
    assert any(loc.startswith(field) for loc in locs), locs


def test_units() -> None:
    assert parse_duration("72h") == 259200
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    assert parse_size("8G") == 8 * 1024**3
    assert parse_size("512M") == 512 * 1024**2
    assert parse_size(1000) == 1000
    with pytest.raises(ValueError):
        parse_duration("abc")
    with pytest.raises(ValueError):
        parse_size("eight gigs")


def test_metric_lines() -> None:
    p = parse_metric_line(b'{"metric": "loss", "value": 0.25, "step": 10, "epoch": 1}', 5.0)
    assert p is not None and (p.name, p.value, p.step, p.epoch, p.time) == ("loss", 0.25, 10, 1, 5.0)
    p = parse_metric_line('{"metric":"acc","value":1}', 1.0)
    assert p is not None and p.value == 1.0 and p.step is None
    for bad in ['{"metric": "loss"}', '{"metric": "loss", "value": "0.5"}', '{"metric": "loss", "value": NaN}',
                '{"metric": "loss", "value": Infinity}', '{"value": 1}', '{"metric": "x", "value": true}',
                '{"metric": "x", "value": 1, "step": 1.5}', '{"metric": "x", "value": 1, "step": "3"}',
                'loss=0.5', '[1, 2]', '{"metric": "x", "value": 1', '']:
        assert parse_metric_line(bad, 0.0) is None, bad


def test_log_metric_prints_one_protocol_line(capsys: pytest.CaptureFixture[str]) -> None:
    log_metric("val_accuracy", 0.97, step=3, epoch=1)
    log_metric("lr", 1e-3)
    lines = capsys.readouterr().out.splitlines()
    first = parse_metric_line(lines[0], 0.0)
    second = parse_metric_line(lines[1], 0.0)
    assert first is not None and first.name == "val_accuracy" and math.isclose(first.value, 0.97)
    assert first.step == 3 and first.epoch == 1
    assert second is not None and second.step is None


@pytest.mark.parametrize("labels, message", [
    ([None, None], "must be a KEY=VALUE string"),
    (["gpu"], "must be KEY=VALUE"),
    (["gpu=h100", "gpu=a100"], "given twice"),
    ({"bad key!": "x"}, "label key"),
    ({"gpu": "a,b"}, "without ','"),
])
def test_bad_node_labels_are_refused_naming_the_label(labels: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        JobSpec(command="true", node_labels=labels)
    assert info.value.errors()[0]["loc"][0] == "node_labels"


def test_node_labels_from_flags_or_yaml_and_nodes_bounds() -> None:
    assert JobSpec(command="true", node_labels=["gpu=h100", "zone=a"]).node_labels == {"gpu": "h100", "zone": "a"}
    assert JobSpec(command="true", node_labels="gpu=h100, zone=a").node_labels == {"gpu": "h100", "zone": "a"}
    spec = JobSpec(command="true", nodes=2, resources={"gpus": 4})
    assert (spec.nodes, spec.local_world_size) == (2, 4)
    assert JobSpec(command="true").local_world_size == 1
    with pytest.raises(ValidationError, match="nodes"):
        JobSpec(command="true", nodes=0)
