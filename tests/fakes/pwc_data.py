"""Papers-with-Code test data: the real links fixture, seeded papers, synthetic archives, writers.

Synthetic archives are generated in batches from a counter-based hash of (seed, row index), so
any size (the full 300,161 links / 576,261 papers included) is produced with bounded memory and
a given row always gets the same values, whichever batch it falls into.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FULL_LINKS = 300_161
FULL_PAPERS = 576_261

LINKS_FILE_STEM = "links-between-papers-and-code"
PAPERS_FILE_STEM = "papers-with-abstracts"

FIXTURE_NAME = "paper_repo_info.csv"
FIXTURE_FILE = Path(__file__).resolve().parent.parent / "fixtures" / "pwc" / FIXTURE_NAME

FRAMEWORKS = ("pytorch", "tf", "jax", "mxnet", "paddle", "mindspore", "caffe2", "torch", "none")

LINK_SCHEMA = pa.schema(
    [
        ("paper_url", pa.string()),
        ("paper_title", pa.string()),
        ("paper_arxiv_id", pa.string()),
        ("paper_url_abs", pa.string()),
        ("paper_url_pdf", pa.string()),
        ("repo_url", pa.string()),
        ("is_official", pa.bool_()),
        ("mentioned_in_paper", pa.bool_()),
        ("mentioned_in_github", pa.bool_()),
        ("framework", pa.string()),
    ]
)

METHOD_TYPE = pa.struct(
    [
        ("name", pa.string()),
        ("full_name", pa.string()),
        ("description", pa.string()),
        ("introduced_year", pa.int64()),
        ("source_url", pa.string()),
        ("source_title", pa.string()),
        ("code_snippet_url", pa.string()),
        (
            "main_collection",
            pa.struct(
                [
                    ("name", pa.string()),
                    ("description", pa.string()),
                    ("parent", pa.string()),
                    ("area", pa.string()),
                ]
            ),
        ),
    ]
)

# How the papers file stores `date`: ISO strings as in the JSON dump, or the other encodings
# seen in derived copies (timestamps, float epoch milliseconds, integer epoch seconds).
DateEncoding = Literal["string", "timestamp", "epoch_ms", "epoch_s"]
DATE_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("ms"),
    "epoch_ms": pa.float64(),
    "epoch_s": pa.int64(),
}


def papers_schema(date_encoding: DateEncoding = "string") -> pa.Schema:
    """The 18 fields of papers-with-abstracts, in the dump's order."""
    return pa.schema(
        [
            ("paper_url", pa.string()),
            ("arxiv_id", pa.string()),
            ("nips_id", pa.string()),
            ("openreview_id", pa.string()),
            ("title", pa.string()),
            ("abstract", pa.string()),
            ("short_abstract", pa.string()),
            ("url_abs", pa.string()),
            ("url_pdf", pa.string()),
            ("conference_url_abs", pa.string()),
            ("conference_url_pdf", pa.string()),
            ("proceeding", pa.string()),
            ("conference", pa.string()),
            ("authors", pa.list_(pa.string())),
            ("tasks", pa.list_(pa.string())),
            ("reproduces_paper", pa.string()),
            ("methods", pa.list_(METHOD_TYPE)),
            ("date", DATE_TYPES[date_encoding]),
        ]
    )


# ---------------------------------------------------------------------------------------------
# The real fixture


def fixture_path() -> Path:
    return FIXTURE_FILE


def repaired_fixture_text(path: Path | None = None) -> str:
    """The fixture CSV with its two quirks removed: the header repeated on its own line and the
    header glued onto the end of a data row (the file is two CSV exports concatenated)."""
    text = (path or fixture_path()).read_text(encoding="utf-8")
    header, body = text.split("\n", 1)
    # Removing every later copy of the header leaves a blank line (skipped by csv) or, for the
    # glued copy, the line break that followed it.
    return header + "\n" + body.replace(header, "")


def load_fixture_links(path: Path | None = None) -> list[dict[str, Any]]:
    """Link records in the archive's column names, from the real 2,297-row extract.

    The extract lacks paper_url_abs/pdf and the mentioned_in_* flags; they are derived from the
    arXiv id or seeded, so the records have every field the dump has.
    """
    reader = csv.DictReader(io.StringIO(repaired_fixture_text(path)))
    rng = np.random.default_rng(2297)
    records = []
    for row in reader:
        if not row.get("paper_url"):
            continue
        arxiv_id = row["paper_arxiv_id"].strip() or None
        official = _parse_fixture_bool(row["is_official"])
        records.append(
            {
                "paper_url": row["paper_url"],
                "paper_title": row["paper_title"],
                "paper_arxiv_id": arxiv_id,
                "paper_url_abs": f"http://arxiv.org/abs/{arxiv_id}v1" if arxiv_id else None,
                "paper_url_pdf": f"http://arxiv.org/pdf/{arxiv_id}v1.pdf" if arxiv_id else None,
                "repo_url": row["repo_url"],
                "is_official": official,
                "mentioned_in_paper": bool(official and rng.random() < 0.8),
                "mentioned_in_github": bool(rng.random() < 0.6),
                "framework": row["framework"],
            }
        )
    return records


def _parse_fixture_bool(value: str) -> bool:
    if value not in ("true", "false"):
        raise ValueError(f"fixture is_official is {value!r}, expected 'true' or 'false'")
    return value == "true"


def fixture_papers(links: list[dict[str, Any]], seed: int = 11) -> list[dict[str, Any]]:
    """One papers record per distinct paper_url of ``links``, with seeded dates.

    The date follows the arXiv id (``YYMM.NNNNN`` → that month, seeded day), as arXiv
    submission dates do; papers without an arXiv id get a seeded date in 2015–2025-07.
    """
    rng = np.random.default_rng(seed)
    papers: dict[str, dict[str, Any]] = {}
    for link in links:
        url = link["paper_url"]
        if url in papers:
            continue
        date = _date_from_arxiv_id(link["paper_arxiv_id"], int(rng.integers(1, 29)))
        if date is None:
            date = dt.date(2015, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3864)))
        papers[url] = _paper_record(
            paper_url=url,
            arxiv_id=link["paper_arxiv_id"],
            title=link["paper_title"],
            date=date.isoformat(),
        )
    return list(papers.values())


def _date_from_arxiv_id(arxiv_id: str | None, day: int) -> dt.date | None:
    if not arxiv_id or "." not in arxiv_id:
        return None
    yymm = arxiv_id.split(".")[0]
    if len(yymm) != 4 or not yymm.isdigit() or not 1 <= int(yymm[2:]) <= 12:
        return None
    return dt.date(2000 + int(yymm[:2]), int(yymm[2:]), day)


def _paper_record(paper_url: str, arxiv_id: str | None, title: str, date: Any) -> dict[str, Any]:
    abstract = f"We study {title.lower()}. " * 4
    return {
        "paper_url": paper_url,
        "arxiv_id": arxiv_id,
        "nips_id": None,
        "openreview_id": None,
        "title": title,
        "abstract": abstract,
        "short_abstract": abstract[:200],
        "url_abs": f"https://arxiv.org/abs/{arxiv_id}v1" if arxiv_id else None,
        "url_pdf": f"https://arxiv.org/pdf/{arxiv_id}v1.pdf" if arxiv_id else None,
        "conference_url_abs": None,
        "conference_url_pdf": None,
        "proceeding": None,
        "conference": None,
        "authors": ["A. Author"],
        "tasks": [],
        "reproduces_paper": None,
        "methods": [],
        "date": date,
    }


def records_batch(records: list[dict[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(records, schema=schema)


# ---------------------------------------------------------------------------------------------
# Synthetic archives


@dataclass(frozen=True)
class ArchiveSpec:
    """Size and flavour of a synthetic archive; the defaults are the real archive's sizes."""

    n_links: int = FULL_LINKS
    n_papers: int = FULL_PAPERS
    seed: int = 7
    orphan_fraction: float = 0.01  # links whose paper is missing from the papers file
    null_date_fraction: float = 0.02
    no_arxiv_fraction: float = 0.12
    versioned_arxiv_fraction: float = 0.05  # link arXiv ids carrying a vN suffix
    messy_repo_fraction: float = 0.12  # repo URLs that need normalisation
    unknown_framework_fraction: float = 0.0  # values outside the vocabulary (off, as in the dump)
    abstract_chars: int = 1000
    date_encoding: DateEncoding = "string"
    batch_size: int = 20_000


FIRST_DAY = np.datetime64("2015-01-01", "D")
LAST_DAY = np.datetime64("2025-07-31", "D")
EARLY_DAY = np.datetime64("2000-01-01", "D")
EARLY_FRACTION = 0.03  # classics from before 2015 (PwC lists e.g. GANs, 2014)
GROWTH_PER_YEAR = 0.3  # papers per year grow roughly exponentially

# Framework mix by year (columns in FRAMEWORKS order), interpolated linearly in between:
# Lua Torch/Caffe era, TensorFlow peak around 2016–2018, PyTorch dominant from 2020.
_MIX_YEARS = np.array([2014.0, 2016.0, 2018.0, 2020.0, 2022.0, 2024.0, 2025.6])
_MIX_WEIGHTS = np.array(
    [
        # pytorch  tf     jax    mxnet  paddle ms     caffe2 torch  none
        [0.000, 0.050, 0.000, 0.020, 0.000, 0.000, 0.100, 0.250, 0.580],
        [0.050, 0.400, 0.000, 0.050, 0.000, 0.000, 0.040, 0.100, 0.360],
        [0.300, 0.350, 0.000, 0.040, 0.005, 0.000, 0.010, 0.020, 0.275],
        [0.500, 0.180, 0.020, 0.020, 0.010, 0.002, 0.005, 0.005, 0.258],
        [0.580, 0.070, 0.040, 0.005, 0.020, 0.020, 0.002, 0.002, 0.261],
        [0.620, 0.040, 0.050, 0.002, 0.015, 0.020, 0.001, 0.001, 0.251],
        [0.630, 0.030, 0.050, 0.001, 0.015, 0.020, 0.001, 0.001, 0.252],
    ]
)

_MASK64 = (1 << 64) - 1


def _uniform(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers that depend only on (seed, stream, index): splitmix64."""
    x = index.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x = x + np.uint64((seed * 0x632BE59BD9B4E019 + stream * 0x85EBCA77C2B2AE63) & _MASK64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# Streams: one per random quantity, so adding one never changes the others.
(
    S_DATE,
    S_EARLY,
    S_NULLDATE,
    S_ARXIV,
    S_ARXIV_NUM,
    S_TITLE,
    S_ABSTRACT_AT,
    S_ABSTRACT_LEN,
    S_PAPER,
    S_ORPHAN,
    S_FRAMEWORK,
    S_OFFICIAL,
    S_MENTIONED,
    S_REPO,
    S_SHARED_REPO,
    S_MESS,
    S_MESS_KIND,
    S_VERSION,
    S_UNKNOWN,
    S_METHODS,
    S_AUTHORS,
) = range(21)


def paper_dates(seed: int, paper_index: np.ndarray) -> np.ndarray:
    """The true publication date of each paper (also used for orphans' frameworks)."""
    u = _uniform(seed, S_DATE, paper_index)
    span_years = (LAST_DAY - FIRST_DAY).astype(int) / 365.25
    growth = np.expm1(GROWTH_PER_YEAR * span_years)
    years = np.log1p(u * growth) / GROWTH_PER_YEAR  # inverse CDF of exponential growth
    days = FIRST_DAY + np.floor(years * 365.25).astype("timedelta64[D]")
    early = _uniform(seed, S_EARLY, paper_index) < EARLY_FRACTION
    early_days = EARLY_DAY + np.floor(u * (FIRST_DAY - EARLY_DAY).astype(int)).astype(
        "timedelta64[D]"
    )
    return np.where(early, early_days, np.minimum(days, LAST_DAY))


def framework_mix(year: float) -> dict[str, float]:
    """Expected framework shares at a (fractional) year, as the generator samples them."""
    weights = _mix_weights(np.array([year]))[0]
    return dict(zip(FRAMEWORKS, weights.tolist(), strict=True))


def _mix_weights(years: np.ndarray) -> np.ndarray:
    columns = [np.interp(years, _MIX_YEARS, _MIX_WEIGHTS[:, k]) for k in range(len(FRAMEWORKS))]
    weights = np.stack(columns, axis=1)
    return weights / weights.sum(axis=1, keepdims=True)


def _sample_frameworks(seed: int, index: np.ndarray, days: np.ndarray) -> np.ndarray:
    years = 1970 + days.astype("datetime64[D]").astype(int) / 365.25
    cumulative = np.cumsum(_mix_weights(years), axis=1)
    u = _uniform(seed, S_FRAMEWORK, index)
    choice = np.minimum((u[:, None] >= cumulative).sum(axis=1), len(FRAMEWORKS) - 1)
    return np.asarray(FRAMEWORKS, dtype=object)[choice]


def _arxiv_ids(seed: int, paper_index: np.ndarray, days: np.ndarray, spec: ArchiveSpec) -> list:
    months = np.datetime_as_string(days.astype("datetime64[M]"))  # 'YYYY-MM'
    numbers = (_uniform(seed, S_ARXIV_NUM, paper_index) * 99_999).astype(int)
    missing = _uniform(seed, S_ARXIV, paper_index) < spec.no_arxiv_fraction
    return [
        None if miss else f"{month[2:4]}{month[5:7]}.{number:05d}"
        for month, number, miss in zip(months, numbers, missing, strict=True)
    ]


_TITLE_WORDS = (
    "Deep", "Sparse", "Robust", "Efficient", "Contrastive", "Graph", "Neural", "Latent",
    "Adversarial", "Scalable", "Self-Supervised", "Multimodal", "Bayesian", "Hierarchical",
    "Diffusion", "Recurrent", "Attention", "Transformer",
)  # fmt: skip
_TASKS = ("Image Classification", "Object Detection", "Machine Translation", "Speech Recognition",
          "Reinforcement Learning", "Semantic Segmentation", "Question Answering")  # fmt: skip
_AUTHORS = ("Ada Lovelace", "Alan Turing", "Grace Hopper", "Yann LeCun", "Fei-Fei Li",
            "Geoffrey Hinton", "Yoshua Bengio", "Andrew Ng", "Daphne Koller")  # fmt: skip
_METHODS = [
    {
        "name": name,
        "full_name": full,
        "description": f"{full} is a building block of neural networks.",
        "introduced_year": year,
        "source_url": None,
        "source_title": None,
        "code_snippet_url": None,
        "main_collection": {"name": collection, "description": "", "parent": None, "area": area},
    }
    for name, full, year, collection, area in [
        ("ReLU", "Rectified Linear Units", 2000, "Activation Functions", "General"),
        ("Dropout", "Dropout", 2014, "Regularization", "General"),
        ("Adam", "Adam", 2014, "Stochastic Optimization", "General"),
        ("Attention", "Scaled Dot-Product Attention", 2017, "Attention Mechanisms", "General"),
        ("BatchNorm", "Batch Normalization", 2015, "Normalization", "General"),
        ("ResNet", "Residual Network", 2015, "Convolutional Neural Networks", "Computer Vision"),
    ]
]


def _titles(seed: int, paper_index: np.ndarray) -> list[str]:
    u = (_uniform(seed, S_TITLE, paper_index) * len(_TITLE_WORDS) ** 3).astype(int)
    n = len(_TITLE_WORDS)
    return [
        f"{_TITLE_WORDS[k % n]} {_TITLE_WORDS[k // n % n]} {_TITLE_WORDS[k // n // n % n]} "
        f"Learning {i}"
        for k, i in zip(u.tolist(), paper_index.tolist(), strict=True)
    ]


def paper_url(paper_index: int) -> str:
    return f"https://paperswithcode.com/paper/synthetic-paper-{paper_index:07d}"


def _abstract_pool(seed: int) -> str:
    words = (
        "we", "propose", "a", "novel", "method", "model", "network", "learning", "training",
        "data", "results", "show", "that", "our", "approach", "outperforms", "state", "of",
        "the", "art", "on", "benchmark", "tasks", "with", "fewer", "parameters", "experiments",
        "demonstrate", "significant", "improvements", "in", "accuracy", "and", "efficiency",
        "across", "image", "text", "speech", "graph", "domains", "using", "attention",
        "convolution", "recurrent", "layers",
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(words, size=120_000).tolist())


def synthetic_papers(spec: ArchiveSpec) -> Iterator[pa.RecordBatch]:
    """The papers file in batches of ``spec.batch_size`` rows."""
    pool = _abstract_pool(spec.seed)
    schema = papers_schema(spec.date_encoding)
    for start in range(0, spec.n_papers, spec.batch_size):
        index = np.arange(start, min(start + spec.batch_size, spec.n_papers), dtype=np.int64)
        yield _papers_batch(spec, index, pool, schema)


def _papers_batch(
    spec: ArchiveSpec, index: np.ndarray, pool: str, schema: pa.Schema
) -> pa.RecordBatch:
    seed = spec.seed
    days = paper_dates(seed, index)
    null_date = _uniform(seed, S_NULLDATE, index) < spec.null_date_fraction
    arxiv = _arxiv_ids(seed, index, days, spec)
    titles = _titles(seed, index)
    lengths = np.clip(
        spec.abstract_chars
        + (_uniform(seed, S_ABSTRACT_LEN, index) - 0.5) * 0.4 * spec.abstract_chars,
        1,
        len(pool) // 2,
    ).astype(int)
    offsets = (_uniform(seed, S_ABSTRACT_AT, index) * (len(pool) - lengths)).astype(int)
    abstracts = [pool[o : o + n] for o, n in zip(offsets.tolist(), lengths.tolist(), strict=True)]
    picks = (_uniform(seed, S_METHODS, index) * 64).astype(int)
    n_authors = 1 + (_uniform(seed, S_AUTHORS, index) * 6).astype(int)
    ids = index.tolist()
    urls = [paper_url(i) for i in ids]
    columns: dict[str, Any] = {
        "paper_url": urls,
        "arxiv_id": arxiv,
        "nips_id": [None] * len(ids),
        "openreview_id": [None if a else f"syn{i}" for i, a in zip(ids, arxiv, strict=True)],
        "title": titles,
        "abstract": abstracts,
        "short_abstract": [a[:200] for a in abstracts],
        "url_abs": [
            f"https://arxiv.org/abs/{a}v1" if a else f"https://openreview.net/forum?id=syn{i}"
            for i, a in zip(ids, arxiv, strict=True)
        ],
        "url_pdf": [
            f"https://arxiv.org/pdf/{a}v1.pdf" if a else f"https://openreview.net/pdf?id=syn{i}"
            for i, a in zip(ids, arxiv, strict=True)
        ],
        "conference_url_abs": [None] * len(ids),
        "conference_url_pdf": [None] * len(ids),
        "proceeding": [None] * len(ids),
        "conference": [None] * len(ids),
        "authors": [list(_AUTHORS[i % 5 : i % 5 + n]) for i, n in zip(ids, n_authors, strict=True)],
        "tasks": [[_TASKS[p % len(_TASKS)]] for p in picks.tolist()],
        "reproduces_paper": [None] * len(ids),
        "methods": [[_METHODS[p % 6], _METHODS[p // 6 % 6]][: p % 3] for p in picks.tolist()],
        "date": _encode_dates(days, null_date, spec.date_encoding),
    }
    return pa.RecordBatch.from_pydict(columns, schema=schema)


def _encode_dates(days: np.ndarray, null: np.ndarray, encoding: DateEncoding) -> pa.Array:
    if encoding == "string":
        return pa.array(np.datetime_as_string(days), type=pa.string(), mask=null)
    if encoding == "timestamp":
        return pa.array(days.astype("datetime64[ms]"), type=pa.timestamp("ms"), mask=null)
    seconds = days.astype("datetime64[s]").astype(np.int64)
    if encoding == "epoch_ms":
        return pa.array(seconds.astype(np.float64) * 1000.0, type=pa.float64(), mask=null)
    return pa.array(seconds, type=pa.int64(), mask=null)


def synthetic_links(spec: ArchiveSpec) -> Iterator[pa.RecordBatch]:
    """The links file in batches of ``spec.batch_size`` rows."""
    for start in range(0, spec.n_links, spec.batch_size):
        index = np.arange(start, min(start + spec.batch_size, spec.n_links), dtype=np.int64)
        yield _links_batch(spec, index)


def _links_batch(spec: ArchiveSpec, index: np.ndarray) -> pa.RecordBatch:
    seed = spec.seed
    orphan = _uniform(seed, S_ORPHAN, index) < spec.orphan_fraction
    within = (_uniform(seed, S_PAPER, index) * spec.n_papers).astype(np.int64)
    # Orphans point past the papers file: their paper exists in PwC but not in the dump.
    paper = np.where(orphan, spec.n_papers + within // 10, within)
    days = paper_dates(seed, paper)
    arxiv = _arxiv_ids(seed, paper, days, spec)
    versioned = _uniform(seed, S_VERSION, index) < spec.versioned_arxiv_fraction
    arxiv = [
        f"{a}v{1 + j % 4}" if a and v else a
        for a, v, j in zip(arxiv, versioned.tolist(), index.tolist(), strict=True)
    ]
    frameworks = _sample_frameworks(seed, index, days)
    shared = _uniform(seed, S_SHARED_REPO, index) < 0.08
    # A few big repositories (monorepos) hold code of many papers; they keep one framework.
    repo = np.where(shared, (_uniform(seed, S_REPO, index) * 2000).astype(np.int64), 10_000 + index)
    shared_frameworks = np.asarray(("tf", "pytorch", "none", "pytorch"), dtype=object)[repo % 4]
    frameworks = np.where(shared, shared_frameworks, frameworks)
    unknown = _uniform(seed, S_UNKNOWN, index) < spec.unknown_framework_fraction
    frameworks = np.where(unknown, "tensorflow", frameworks)  # the classic invalid value
    official = _uniform(seed, S_OFFICIAL, index) < 0.55
    mentioned = _uniform(seed, S_MENTIONED, index)
    ids = paper.tolist()
    columns = {
        "paper_url": [paper_url(i) for i in ids],
        "paper_title": _titles(seed, paper),
        "paper_arxiv_id": arxiv,
        "paper_url_abs": [f"http://arxiv.org/abs/{a}v1" if a else None for a in arxiv],
        "paper_url_pdf": [f"http://arxiv.org/pdf/{a}v1.pdf" if a else None for a in arxiv],
        "repo_url": _repo_urls(spec, index, repo),
        "is_official": official,
        "mentioned_in_paper": official & (mentioned < 0.8),
        "mentioned_in_github": mentioned < 0.6,
        "framework": frameworks.tolist(),
    }
    return pa.RecordBatch.from_pydict(columns, schema=LINK_SCHEMA)


def canonical_repo_url(repo_index: int) -> str:
    """The normalised URL of a synthetic repository (host always github.com or gitlab.com)."""
    host = "gitlab.com" if repo_index % 50 == 7 else "github.com"
    return f"https://{host}/lab{repo_index % 40_000}/project-{repo_index}"


def _repo_urls(spec: ArchiveSpec, index: np.ndarray, repo: np.ndarray) -> list[str]:
    messy = _uniform(spec.seed, S_MESS, index) < spec.messy_repo_fraction
    kinds = (_uniform(spec.seed, S_MESS_KIND, index) * 7).astype(int)
    urls = []
    for r, is_messy, kind in zip(repo.tolist(), messy.tolist(), kinds.tolist(), strict=True):
        url = canonical_repo_url(r)
        if is_messy:
            url = _mess_up(url, kind)
        urls.append(url)
    return urls


def _mess_up(url: str, kind: int) -> str:
    """One of the variants seen in the dump that all mean the same repository."""
    if kind == 0:
        return url + "/tree/master/src"
    if kind == 1:
        return url + "/blob/main/train.py"
    if kind == 2:
        return url + ".git"
    if kind == 3:
        return url + "/"
    if kind == 4:
        return url.replace("https://", "http://")
    if kind == 5:
        return url.replace("https://", "https://www.")
    return url.replace("/lab", "/Lab").replace("project-", "Project-")


# ---------------------------------------------------------------------------------------------
# Writers


def write_parquet(
    path: Path, batches: Iterable[pa.RecordBatch], schema: pa.Schema, row_group_size: int = 50_000
) -> Path:
    """Write batches as Parquet, one row group at a time (bounded memory), atomically."""
    partial = path.with_name(path.name + ".partial")
    with pq.ParquetWriter(partial, schema, compression="snappy") as writer:
        for batch in batches:
            writer.write_batch(batch, row_group_size=row_group_size)
    partial.replace(path)
    return path


def write_json_gz(path: Path, batches: Iterable[pa.RecordBatch], compresslevel: int = 1) -> Path:
    """Write batches as the original dump format: one top-level JSON array, gzipped, streamed."""
    partial = path.with_name(path.name + ".partial")
    with gzip.open(partial, "wt", encoding="utf-8", compresslevel=compresslevel) as out:
        out.write("[")
        first = True
        for batch in batches:
            for record in batch.to_pylist():
                out.write("\n" if first else ",\n")
                out.write(json.dumps(record, ensure_ascii=False, default=_json_default))
                first = False
        out.write("\n]\n")
    partial.replace(path)
    return path


def _json_default(value: object) -> str:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_archive_file(path: Path, batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Path:
    """Write Parquet or ``.json.gz`` according to the file name."""
    if path.name.endswith(".parquet"):
        return write_parquet(path, batches, schema)
    if path.name.endswith(".json.gz"):
        return write_json_gz(path, batches)
    raise ValueError(f"{path}: expected a .parquet or .json.gz name")


ArchiveFormat = Literal["parquet", "json.gz"]


def write_fixture_archive(directory: Path) -> dict[str, Path]:
    """The real fixture links with their seeded papers, in both formats.

    Keys: ``links.parquet``, ``papers.parquet``, ``links.json.gz``, ``papers.json.gz``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    links = load_fixture_links()
    papers = fixture_papers(links)
    schema = papers_schema()
    files = {}
    for fmt in ("parquet", "json.gz"):
        files[f"links.{fmt}"] = write_archive_file(
            directory / f"links.{fmt}", [records_batch(links, LINK_SCHEMA)], LINK_SCHEMA
        )
        files[f"papers.{fmt}"] = write_archive_file(
            directory / f"papers.{fmt}", [records_batch(papers, schema)], schema
        )
    return files


def write_synthetic_archive(
    directory: Path, spec: ArchiveSpec, formats: Iterable[ArchiveFormat] = ("parquet", "json.gz")
) -> dict[str, Path]:
    """Write the links and papers files of ``spec`` in each format; returns name → path."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt in formats:
        links = directory / f"{LINKS_FILE_STEM}.{fmt}"
        papers = directory / f"{PAPERS_FILE_STEM}.{fmt}"
        written[links.name] = write_archive_file(links, synthetic_links(spec), LINK_SCHEMA)
        written[papers.name] = write_archive_file(
            papers, synthetic_papers(spec), papers_schema(spec.date_encoding)
        )
    return written
