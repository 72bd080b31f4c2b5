"""Datasets without a store: readers on real files of every kind, split parsing and
assignment, every format read back by its own reader, and bad input as ModelyardError.

The factories here (``make_*``) build tiny real sources; test_datasets_store.py uses them too.
"""
from __future__ import annotations

import gzip
import io
import json
import struct
from collections import Counter
from pathlib import Path

import crc32c
import lmdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image
from tfrecord import example_pb2
from tfrecord.reader import tfrecord_loader

from modelyard.datasets import FORMATS, open_source, parse_split
from modelyard.datasets.build import build
from modelyard.datasets.formats import check_format
from modelyard.datasets.formats.encoding import decode
from modelyard.datasets.names import parse_ref, validate_name
from modelyard.datasets.readers.idx import read_header
from modelyard.datasets.splits import assign
from modelyard.errors import ErrorCode, ModelyardError

# -- factories: tiny real sources -------------------------------------------------------

IMAGE_CLASSES = {"bird": 6, "cat": 10, "dog": 8}


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08) -> None:
    """An IDX file byte by byte: magic (0, 0, type, ndim), big-endian dims, big-endian data."""
    out = bytearray([0, 0, type_code, array.ndim])
    for dim in array.shape:
        out += struct.pack(">I", dim)
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[type_code]
    out += array.astype(dtype).tobytes()
    data = gzip.compress(bytes(out)) if path.name.endswith(".gz") else bytes(out)
    path.write_bytes(data)


def mnist_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 4, 5), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def make_mnist(folder: Path, *, gz: bool = False, n_train: int = 60, n_test: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for part, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        x, y = mnist_arrays(n, seed)
        write_idx(folder / f"{part}-images-idx3-ubyte{suffix}", x)
        write_idx(folder / f"{part}-labels-idx1-ubyte{suffix}", y)
    return folder


def make_images(folder: Path, *, size: tuple[int, int] = (6, 5)) -> Path:
    for i, (cls, n) in enumerate(IMAGE_CLASSES.items()):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for j in range(n):
            img = Image.new("RGB", size, (i * 80, j * 20, 7))
            img.save(folder / cls / f"{j:03d}.png")
    return folder


def make_table_rows(n: int = 50) -> list[dict[str, object]]:
    return [{"f1": float(i), "f2": i * 2, "label": "yes" if i % 5 == 0 else "no"} for i in range(n)]


def make_csv(path: Path, n: int = 50) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(pa.Table.from_pylist(make_table_rows(n)), str(path))
    return path


def make_parquet(path: Path, n: int = 50) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(make_table_rows(n)), str(path))
    return path


def make_npz(path: Path, n: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    np.savez(path, x=rng.normal(size=(n, 3)).astype(np.float32), y=np.arange(n) % 4)
    return path


def make_plain(folder: Path) -> Path:
    for rel, text in {"a.txt": "alpha", "sub/b.json": '{"b": 1}', "sub/deeper/c": "gamma" * 10, ".hidden": "x"}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def make_source(kind: str, root: Path) -> Path:
    makers = {
        "idx": lambda: make_mnist(root / "mnist"), "images": lambda: make_images(root / "images"),
        "csv": lambda: make_csv(root / "t.csv"), "parquet": lambda: make_parquet(root / "t.parquet"),
        "npz": lambda: make_npz(root / "d.npz"), "folder": lambda: make_plain(root / "plain"),
    }
    return makers[kind]()


def source_records(path: Path) -> dict[str, tuple[object, object]]:
    """key -> (label, payload as bytes / array / row) read straight from the source."""
    out = {}
    for r in open_source(str(path)).records():
        payload = r.payload.read() if hasattr(r.payload, "read") else r.payload
        out[r.key] = (r.label, payload)
    return out


# -- readers ------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader_matches_the_bytes_written(tmp_path: Path, gz: bool) -> None:
    src = open_source(str(make_mnist(tmp_path / "m", gz=gz)))
    assert src.kind == "idx"
    records = list(src.records())
    parts = Counter(e.part for e in src.index())
    assert parts == {"train": 60, "test": 20}
    x, y = mnist_arrays(60, 1)
    train = [r for r in records if r.key.startswith("train-")]
    assert [r.label for r in train] == y.tolist()
    assert np.array_equal(np.stack([r.payload for r in train]), x)


def test_idx_counts_that_disagree_name_both_files(tmp_path: Path) -> None:
    folder = make_mnist(tmp_path / "m")
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(59, dtype=np.uint8))
    with pytest.raises(ModelyardError) as e:
        open_source(str(folder))
    assert e.value.field == "source" and e.value.code is ErrorCode.INVALID
    msg = e.value.message
    assert "train-images-idx3-ubyte" in msg and "60" in msg and "train-labels-idx1-ubyte" in msg and "59" in msg


def test_idx_bad_magic_and_missing_partner(tmp_path: Path) -> None:
    folder = make_mnist(tmp_path / "m")
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\x12\x34\x08\x03" + b"\0" * 12)
    with pytest.raises(ModelyardError, match="not an IDX file"):
        open_source(str(folder))
    (folder / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(ModelyardError, match="t10k-labels-idx1-ubyte has no matching images"):
        open_source(str(folder))


def test_image_folder_labels_are_the_subfolders_and_images_are_verified(tmp_path: Path) -> None:
    folder = make_images(tmp_path / "imgs")
    src = open_source(str(folder))
    assert src.kind == "images"
    assert Counter(e.label for e in src.index()) == IMAGE_CLASSES
    (folder / "cat" / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(ModelyardError, match="cat/bad.png is not a readable image") as e:
        list(open_source(str(folder)).records())
    assert e.value.field == "source"


@pytest.mark.parametrize("maker", [make_csv, make_parquet])
def test_tables_stream_rows_with_the_label_column(tmp_path: Path, maker) -> None:  # type: ignore[no-untyped-def]
    path = maker(tmp_path / ("t.csv" if maker is make_csv else "t.parquet"))
    src = open_source(str(path))
    rows = list(src.records())
    assert [r.payload for r in rows] == make_table_rows()
    assert [r.label for r in rows] == [row["label"] for row in make_table_rows()]
    unlabelled = open_source(str(path), label_column="f2")
    assert next(unlabelled.records()).label == 0
    with pytest.raises(ModelyardError, match="no column 'nope'") as e:
        open_source(str(path), label_column="nope")
    assert e.value.field == "label_column"


def test_npz_keys_default_and_named(tmp_path: Path) -> None:
    path = make_npz(tmp_path / "d.npz")
    src = open_source(str(path))
    data = np.load(path)
    got = list(src.records())
    assert np.array_equal(np.stack([r.payload for r in got]), data["x"])
    assert [r.label for r in got] == data["y"].tolist()
    np.savez(tmp_path / "named.npz", pixels=data["x"], target=data["y"])
    named = open_source(str(tmp_path / "named.npz"), data_key="pixels", label_column="target")
    assert [r.label for r in named.records()] == data["y"].tolist()
    with pytest.raises(ModelyardError, match="no data array") as e:
        open_source(str(tmp_path / "named.npz"))
    assert e.value.field == "data_key"


def test_plain_folder_keeps_files_and_skips_hidden_ones(tmp_path: Path) -> None:
    src = open_source(str(make_plain(tmp_path / "p")))
    assert src.kind == "folder"
    assert {k: v[1] for k, v in source_records(tmp_path / "p").items()} == {
        "a.txt": b"alpha", "sub/b.json": b'{"b": 1}', "sub/deeper/c": b"gamma" * 10}


def test_unreadable_sources(tmp_path: Path) -> None:
    for bad, why in [(tmp_path / "missing", "no such file"), (tmp_path / "empty", "holds no files")]:
        if why == "holds no files":
            bad.mkdir()
        with pytest.raises(ModelyardError, match=why) as e:
            open_source(str(bad))
        assert e.value.field == "source"
    (tmp_path / "broken.npz").write_bytes(b"PK not really")
    with pytest.raises(ModelyardError, match="not an .npz archive"):
        open_source(str(tmp_path / "broken.npz"))


# -- splits -------------------------------------------------------------------------------

def test_parse_split_accepts_and_rejects() -> None:
    assert parse_split("train=0.8,val=0.2") == {"train": 0.8, "val": 0.2}
    assert parse_split("a=0.7, b-2=0.2,c_3=0.1") == {"a": 0.7, "b-2": 0.2, "c_3": 0.1}
    assert parse_split(None) is None
    for bad, why in [("train=0.8,val=0.1", "sum to 0.9"), ("train=0.8,val", "expected NAME=RATIO"),
                     ("Train=1", "bad split name"), ("a/b=1", "bad split name"), ("a=x", "bad ratio"),
                     ("a=0.5,a=0.5", "given twice"), ("a=1.5,b=-0.5", "must be above 0")]:
        with pytest.raises(ModelyardError, match=why) as e:
            parse_split(bad)
        assert e.value.field == "split" and e.value.code is ErrorCode.INVALID


def test_assignment_is_deterministic_exact_and_stratified() -> None:
    labels = [0] * 600 + [1] * 300 + [2] * 100
    a, b, c = assign(labels, [0.8, 0.2], 7), assign(labels, [0.8, 0.2], 7), assign(labels, [0.8, 0.2], 8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert Counter(a.tolist()) == {0: 800, 1: 200}
    val = Counter(labels[i] for i in np.flatnonzero(a == 1))
    for label, share in {0: 0.6, 1: 0.3, 2: 0.1}.items():
        assert abs(val[label] - 200 * share) <= 1
    singletons = assign(list(range(100)), [0.5, 0.5], 0)  # one record per label still splits evenly
    assert Counter(singletons.tolist()) == {0: 50, 1: 50}


# -- formats, read back by their own readers ----------------------------------------------

def masked_crc(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_tfrecord_checked(path: Path) -> list[bytes]:
    """TFRecord framing read independently, checking both masked CRC32Cs of every record."""
    records, raw = [], path.read_bytes()
    pos = 0
    while pos < len(raw):
        length_bytes = raw[pos:pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        assert struct.unpack("<I", raw[pos + 8:pos + 12])[0] == masked_crc(length_bytes)
        data = raw[pos + 12:pos + 12 + length]
        assert struct.unpack("<I", raw[pos + 12 + length:pos + 16 + length])[0] == masked_crc(data)
        records.append(data)
        pos += 16 + length
    return records


def read_back(fmt: str, root: Path, split: str) -> dict[str, tuple[object, object]]:
    """key -> (label, payload) from one written split, through the format's own reader."""
    folder = root / split
    if fmt == "lmdb":
        env = lmdb.open(str(folder), readonly=True, lock=False)
        with env.begin() as txn:
            out = {}
            for key, value in txn.cursor():
                header, payload = decode(value)
                out[key.decode()] = (header["label"], payload)
        env.close()
        return out
    if fmt == "tfrecord":
        return _read_tfrecords(sorted(folder.glob("*.tfrecord")))
    if fmt == "webdataset":
        shards = [str(p) for p in sorted(folder.glob("*.tar"))]
        out = {}
        for s in wds.WebDataset(shards, shardshuffle=False):
            out[s["__key__"]] = _wds_sample(s)
        return out
    raise AssertionError(fmt)


def _wds_sample(s: dict[str, object]) -> tuple[object, object]:
    """(label, payload) of one raw webdataset sample (members as bytes)."""
    if "class.txt" in s:
        label: object = s["class.txt"].decode()  # type: ignore[union-attr]
    else:
        label = int(s["cls"]) if "cls" in s else None  # type: ignore[arg-type]
    members = {k: v for k, v in s.items() if not k.startswith("__") and k not in ("cls", "class.txt", "label.json")}
    (ext, data), = members.items()
    if ext == "npy":
        return label, np.load(io.BytesIO(data), allow_pickle=False)  # type: ignore[arg-type]
    if ext == "json" and label is not None:
        return label, json.loads(data)  # type: ignore[arg-type]
    return label, data


def _read_tfrecords(paths: list[Path]) -> dict[str, tuple[object, object]]:
    out = {}
    for path in paths:
        checked = read_tfrecord_checked(path)
        parsed = list(tfrecord_loader(str(path), None))  # the library's reader agrees on the count
        assert len(parsed) == len(checked)
        for data in checked:
            f = example_pb2.Example.FromString(data).features.feature
            key = f["key"].bytes_list.value[0].decode()
            label = f["label_name"].bytes_list.value[0].decode() if "label_name" in f else (
                f["label"].int64_list.value[0] if "label" in f else None)
            if "shape" in f:
                payload = np.frombuffer(f["data"].bytes_list.value[0], f["dtype"].bytes_list.value[0].decode())
                payload = payload.reshape(list(f["shape"].int64_list.value))
            elif "data" in f:
                payload = f["data"].bytes_list.value[0]
            else:
                payload = {name: _feature_value(f[name]) for name in ("f1", "f2", "label")}
            out[key] = (label, payload)
    return out


def _feature_value(feature: example_pb2.Feature) -> object:
    kind = feature.WhichOneof("kind")
    value = getattr(feature, kind).value[0]
    return value.decode() if kind == "bytes_list" else value


def wds_key(key: str) -> str:
    head, _, last = key.rpartition("/")
    return f"{head}/{last.replace('.', '_')}" if head else last.replace(".", "_")


def assert_same(expected: tuple[object, object], got: tuple[object, object]) -> None:
    assert expected[0] == got[0] or (isinstance(got[0], int) and expected[0] is not None)
    e, g = expected[1], got[1]
    if isinstance(e, np.ndarray):
        assert np.array_equal(e, np.asarray(g))
    elif isinstance(e, dict):
        assert {k: (round(v, 5) if isinstance(v, float) else v) for k, v in e.items()} == \
            {k: (round(v, 5) if isinstance(v, float) else v) for k, v in g.items()}  # type: ignore[union-attr]
    else:
        assert e == g


def build_version(kind: str, fmt: str, root: Path, split: str | None = "train=0.75,val=0.25"):  # type: ignore[no-untyped-def]
    src_path = make_source(kind, root / "src")
    out = root / f"out-{kind}-{fmt}"
    built = build(open_source(str(src_path)), parse_split(split), 0, check_format(fmt, kind), out)
    return src_path, out, built


@pytest.mark.parametrize("fmt", ["lmdb", "tfrecord", "webdataset"])
@pytest.mark.parametrize("kind", ["idx", "images", "csv", "npz", "folder"])
def test_record_formats_read_back_every_record(tmp_path: Path, kind: str, fmt: str) -> None:
    src_path, out, built = build_version(kind, fmt, tmp_path)
    expected = source_records(src_path)
    got: dict[str, tuple[object, object]] = {}
    for s in built.splits:
        part = read_back(fmt, out, s.name)
        assert len(part) == s.count
        got.update(part)
    keys = {wds_key(k): k for k in expected} if fmt == "webdataset" else {k: k for k in expected}
    assert set(got) == set(keys)
    for k, value in got.items():
        assert_same(expected[keys[k]], value)


@pytest.mark.parametrize("kind", ["idx", "images", "csv", "npz"])
def test_npz_format_holds_x_y_per_split(tmp_path: Path, kind: str) -> None:
    src_path, out, built = build_version(kind, "npz", tmp_path)
    expected = source_records(src_path)
    total = 0
    for s in built.splits:
        with np.load(out / s.name / f"{s.name}.npz") as z:
            assert len(z["x"]) == len(z["y"]) == s.count
            total += s.count
            if kind == "images":
                assert z["classes"].tolist() == sorted(IMAGE_CLASSES) and z["x"].shape[1:] == (5, 6, 3)
            if kind == "csv":
                assert z["x"].shape[1:] == (2,) and set(z["classes"].tolist()) == {"no", "yes"}
    assert total == len(expected)


def test_files_format_keeps_the_source_kind(tmp_path: Path) -> None:
    src, out, built = build_version("images", "files", tmp_path)
    for rel, (_label, data) in source_records(src).items():
        assert sum((out / s.name / rel).is_file() for s in built.splits) == 1
        assert next((out / s.name / rel).read_bytes() for s in built.splits if (out / s.name / rel).is_file()) == data
    src, out, built = build_version("idx", "files", tmp_path)
    for s in built.splits:
        with open(out / s.name / "images-idx3-ubyte", "rb") as f:
            assert read_header(f, "x").shape == (s.count, 4, 5)
        assert open_source(str(out / s.name)).kind == "idx"
    src, out, built = build_version("csv", "files", tmp_path)
    rows = [r for s in built.splits for r in pacsv.read_csv(out / s.name / "data.csv").to_pylist()]
    assert sorted(rows, key=lambda r: r["f1"]) == make_table_rows()
    _, out, built = build_version("folder", "files", tmp_path, split=None)
    assert [s.name for s in built.splits] == ["all"] and (out / "all" / "sub" / "deeper" / "c").is_file()


def test_parquet_files_format_and_mnist_parts_without_split(tmp_path: Path) -> None:
    _, out, built = build_version("parquet", "files", tmp_path)
    assert sum(pq.read_table(out / s.name / "data.parquet").num_rows for s in built.splits) == 50
    _, out, built = build_version("idx", "npz", tmp_path, split=None)
    assert [(s.name, s.count, s.ratio) for s in built.splits] == [("train", 60, None), ("test", 20, None)]


def test_format_errors_name_the_field() -> None:
    for bad, why in [("recordio", "MXNet is retired"), ("mxnet", "MXNet is retired"), ("hdf5", "unknown format")]:
        with pytest.raises(ModelyardError, match=why) as e:
            check_format(bad)
        assert e.value.field == "format" and all(f in e.value.message for f in FORMATS)
    with pytest.raises(ModelyardError, match="npz needs arrays") as e:
        check_format("npz", "folder")


def test_npz_refuses_images_of_different_sizes(tmp_path: Path) -> None:
    folder = make_images(tmp_path / "imgs")
    Image.new("RGB", (9, 9)).save(folder / "cat" / "big.png")
    with pytest.raises(ModelyardError, match="one shape") as e:
        build(open_source(str(folder)), None, 0, "npz", tmp_path / "out")
    assert e.value.field == "format"


def test_names_and_refs() -> None:
    assert validate_name("mnist-v2.1_x") == "mnist-v2.1_x"
    for bad in ["a/b", "", "-x", "a b", "x" * 101]:
        with pytest.raises(ModelyardError) as e:
            validate_name(bad)
        assert e.value.field == "name"
    with pytest.raises(ModelyardError, match="contains '/'"):
        validate_name("a/b")
    assert parse_ref("digits") == ("digits", None) and parse_ref("digits:AB12cd") == ("digits", "ab12cd")
    with pytest.raises(ModelyardError, match="bad dataset version"):
        parse_ref("digits:zz")


def test_lmdb_values_decode_without_modelyard(tmp_path: Path) -> None:
    _, out, built = build_version("idx", "lmdb", tmp_path)
    env = lmdb.open(str(out / "train"), readonly=True, lock=False)
    with env.begin() as txn:
        key, value = next(iter(txn.cursor()))
    n = int.from_bytes(value[4:8], "little")
    header = json.loads(value[8:8 + n])
    image = np.frombuffer(value[8 + n:], header["dtype"]).reshape(header["shape"])
    part, i = key.decode().split("-")
    x, y = mnist_arrays(60, 1) if part == "train" else mnist_arrays(20, 2)
    i = int(i)
    assert value[:4] == b"MYR1" and header["label"] == int(y[i]) and np.array_equal(image, x[i])
    assert sorted(p.name for p in (out / "train").iterdir()) == ["data.mdb"]
    env.close()
