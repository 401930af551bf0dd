"""CITATION.cff is valid Citation File Format 1.2.0 and cites both papers the project implements.

No CFF validator is installed, so this checks the parts of the 1.2.0 schema
(https://citation-file-format.github.io/1.2.0/schema) that the file uses: required keys,
allowed keys (the schema forbids additional properties), enums and the DOI pattern.
"""

from __future__ import annotations

import re
import tomllib

import yaml

from conftest import REPO

# CFF 1.2.0 schema, copied from its definitions.
DOI = re.compile(r"^10\.\d{4,9}(\.\d+)?/[A-Za-z0-9:/_;\-\.\(\)\[\]\\]+$")
URL = re.compile(r"^(https|http|ftp|sftp)://.+")
ROOT_KEYS = {
    "abstract", "authors", "cff-version", "commit", "contact", "date-released", "doi",
    "identifiers", "keywords", "license", "license-url", "message", "preferred-citation",
    "references", "repository", "repository-artifact", "repository-code", "title", "type",
    "url", "version",
}  # fmt: skip
PERSON_KEYS = {
    "address", "affiliation", "alias", "city", "country", "email", "family-names", "fax",
    "given-names", "name-particle", "name-suffix", "orcid", "post-code", "region", "tel",
    "website",
}  # fmt: skip
ENTITY_KEYS = {
    "address", "alias", "city", "country", "date-end", "date-start", "email", "fax",
    "location", "name", "orcid", "post-code", "region", "tel", "website",
}  # fmt: skip
# the reference keys this file may use (all are in the schema's reference definition)
REFERENCE_KEYS = {
    "type", "title", "authors", "collection-title", "conference", "publisher", "year",
    "month", "volume", "issue", "pages", "start", "end", "doi", "url", "abstract", "keywords",
    "editors", "isbn", "issn", "journal", "notes",
}  # fmt: skip
REFERENCE_TYPES = {"article", "conference-paper", "proceedings", "book", "software", "generic"}

PAPERS = {
    "10.18653/v1/N19-1021": (
        "Cyclical Annealing Schedule: A Simple Approach to Mitigating KL Vanishing",
        ["Fu", "Li", "Liu", "Gao", "Celikyilmaz", "Carin"],
        2019,
    ),
    "10.1609/aaai.v33i01.33014173": (
        "Communication-Efficient Stochastic Gradient MCMC for Neural Networks",
        ["Li", "Chen", "Pu", "Henao", "Carin"],
        2019,
    ),
}


def _check_author(author: dict, where: str) -> None:
    assert isinstance(author, dict) and author, where
    if "name" in author:  # an entity
        assert set(author) <= ENTITY_KEYS, (where, set(author) - ENTITY_KEYS)
        assert isinstance(author["name"], str) and author["name"].strip(), where
    else:  # a person
        assert set(author) <= PERSON_KEYS, (where, set(author) - PERSON_KEYS)
        assert author.get("family-names") and author.get("given-names"), where


def test_citation_cff_is_valid_cff_1_2_0() -> None:
    text = (REPO / "CITATION.cff").read_text(encoding="utf-8")
    cff = yaml.safe_load(text)
    assert cff["cff-version"] == "1.2.0"
    for key in ("authors", "cff-version", "message", "title"):
        assert key in cff and cff[key], f"missing required key {key}"
    assert set(cff) <= ROOT_KEYS, set(cff) - ROOT_KEYS
    assert cff.get("type", "software") in {"software", "dataset"}
    for i, author in enumerate(cff["authors"]):
        _check_author(author, f"authors[{i}]")
    for key in ("title", "message", "abstract"):
        assert isinstance(cff[key], str) and cff[key].strip(), key
    assert all(isinstance(k, str) and k for k in cff["keywords"])
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert str(cff["version"]) == version, "CITATION.cff version differs from pyproject.toml"

    refs = cff["references"]
    assert refs, "references must not be empty"
    for i, ref in enumerate(refs):
        where = f"references[{i}]"
        assert set(ref) <= REFERENCE_KEYS, (where, set(ref) - REFERENCE_KEYS)
        assert ref["type"] in REFERENCE_TYPES and ref["title"].strip() and ref["authors"], where
        for j, author in enumerate(ref["authors"]):
            _check_author(author, f"{where}.authors[{j}]")
        for entity in ("conference", "publisher"):
            if entity in ref:
                _check_author(ref[entity], f"{where}.{entity}")
        assert isinstance(ref["doi"], str) and DOI.match(ref["doi"]), (where, ref["doi"])
        if "url" in ref:
            assert URL.match(ref["url"]), (where, ref["url"])


def test_citation_cff_cites_both_papers() -> None:
    refs = yaml.safe_load((REPO / "CITATION.cff").read_text())["references"]
    by_doi = {ref["doi"]: ref for ref in refs}
    assert set(by_doi) >= set(PAPERS), sorted(by_doi)
    for doi, (title, families, year) in PAPERS.items():
        ref = by_doi[doi]
        assert ref["title"] == title
        assert [a["family-names"] for a in ref["authors"]] == families
        assert ref["year"] == year and ref["type"] == "conference-paper"


def test_readme_says_how_to_cite() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## How to cite", 1)[1]
    assert "CITATION.cff" in section
    for doi in PAPERS:
        assert doi in section
