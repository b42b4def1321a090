"""Read the real Google Trends recordings (pytrends' VCR cassettes) as plain Python objects.

The cassettes live in tests/fixtures/gtrends_cassettes (see SOURCE.md there). Response
bodies are stored as YAML ``!!binary`` (base64) and are usually gzip-compressed; this module
returns the exact bytes Google sent, decompressed.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

CASSETTE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "gtrends_cassettes"


@dataclass(frozen=True)
class Interaction:
    """One recorded request/response pair."""

    method: str
    uri: str
    status: int
    headers: dict[str, str]  # response headers; repeated headers joined with ", "
    body: bytes  # decoded: base64 undone by YAML, gzip undone here

    @property
    def path(self) -> str:
        return urlsplit(self.uri).path

    @property
    def params(self) -> dict[str, str]:
        return {key: values[0] for key, values in parse_qs(urlsplit(self.uri).query).items()}


def _decode_body(raw: object, headers: dict[str, str]) -> bytes:
    if raw is None:
        return b""
    body = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
    # The header says gzip, but check the magic number too: VCR sometimes stores decoded text.
    if "gzip" in headers.get("Content-Encoding", "").lower() and body[:2] == b"\x1f\x8b":
        return gzip.decompress(body)
    return body


def load_cassette(name: str, directory: Path = CASSETTE_DIR) -> list[Interaction]:
    """Interactions of ``name`` (with or without ``.yaml``) in recording order."""
    path = directory / (name if name.endswith(".yaml") else f"{name}.yaml")
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    interactions = []
    for item in document["interactions"]:
        response = item["response"]
        headers = {key: ", ".join(map(str, values)) for key, values in response["headers"].items()}
        interactions.append(
            Interaction(
                method=item["request"]["method"],
                uri=item["request"]["uri"],
                status=int(response["status"]["code"]),
                headers=headers,
                body=_decode_body(response["body"]["string"], headers),
            )
        )
    return interactions


def find_interaction(name: str, path_suffix: str) -> Interaction:
    """The first interaction of cassette ``name`` whose URL path ends with ``path_suffix``."""
    for interaction in load_cassette(name):
        if interaction.path.endswith(path_suffix):
            return interaction
    raise LookupError(f"cassette {name} has no request to a path ending in {path_suffix!r}")
