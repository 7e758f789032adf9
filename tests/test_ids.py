"""Canonical paper ids: arXiv id splitting, DOI extraction, link normalisation, precedence."""

from __future__ import annotations

import pytest

from newsletter.sources.ids import canonical_id, doi_from, normalise_link, split_arxiv_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # new-style ids, 5- and 4-digit sequence numbers, with and without a version
        ("2604.21935", ("2604.21935", None)),
        ("2604.21935v1", ("2604.21935", 1)),
        ("2604.21935v12", ("2604.21935", 12)),
        ("1111.2011v2", ("1111.2011", 2)),
        ("  2604.21935v3\n", ("2604.21935", 3)),
        ("arXiv:2604.21935v2", ("2604.21935", 2)),
        ("ARXIV:2604.21935", ("2604.21935", None)),
        # old-style ids
        ("astro-ph/0601001", ("astro-ph/0601001", None)),
        ("astro-ph/0601001v2", ("astro-ph/0601001", 2)),
        ("cond-mat/0412498v1", ("cond-mat/0412498", 1)),
        ("math.AG/0601001v1", ("math.AG/0601001", 1)),
        # OAI guids as rss.arxiv.org writes them
        ("oai:arXiv.org:2604.21935v1", ("2604.21935", 1)),
        ("oai:arXiv.org:2205.06398v2", ("2205.06398", 2)),
        ("oai:arXiv.org:astro-ph/0601001v1", ("astro-ph/0601001", 1)),
        # abs / pdf / html URLs, old and new API generations
        ("http://arxiv.org/abs/2604.21935v1", ("2604.21935", 1)),
        ("https://arxiv.org/abs/2604.21935", ("2604.21935", None)),
        ("https://arxiv.org/pdf/2604.21935v4", ("2604.21935", 4)),
        ("https://arxiv.org/pdf/2604.21935v4.pdf", ("2604.21935", 4)),
        ("https://arxiv.org/html/2604.21935v2", ("2604.21935", 2)),
        ("http://arxiv.org/abs/cond-mat/0412498v1", ("cond-mat/0412498", 1)),
        ("http://export.arxiv.org/abs/1707.08567v1", ("1707.08567", 1)),
        ("https://arxiv.org/api/2604.26951v1", None),  # not an abs/pdf/html path
        # garbage
        ("", None),
        ("   ", None),
        ("hello world", None),
        ("abc", None),
        ("2604", None),
        ("2604.219", None),  # too few digits after the dot
        ("2604.219351", None),  # too many digits after the dot
        ("12345.67890", None),
        ("2604.21935vX", None),
        ("https://example.com/2604.21935", None),
        ("https://tldr.takara.ai/p/2604.26238", None),
        ("10.1101/2023.12.16.571984", None),
    ],
)
def test_split_arxiv_id(text: str, expected: tuple[str, int | None] | None) -> None:
    assert split_arxiv_id(text) == expected


def test_split_arxiv_id_version_is_an_int() -> None:
    split = split_arxiv_id("2604.21935v7")
    assert split is not None
    assert isinstance(split[1], int) and split[1] == 7


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1101/2023.12.16.571984", "10.1101/2023.12.16.571984"),
        ("doi:10.1101/2023.12.16.571984", "10.1101/2023.12.16.571984"),
        ("https://doi.org/10.1103/PhysRevB.85.144528", "10.1103/physrevb.85.144528"),
        ("http://dx.doi.org/10.1000/ABC.def", "10.1000/abc.def"),
        ("see 10.1234/xyz.", "10.1234/xyz"),  # sentence punctuation stripped
        ("10.1234/xyz,", "10.1234/xyz"),
        ("10.1234/xyz;", "10.1234/xyz"),
        ("DOI 10.123456789/a-b_c(d)e", "10.123456789/a-b_c(d)e"),
        ("", None),
        ("no doi in here", None),
        ("10.12/too-short-registrant", None),
        ("10.1234", None),
        ("https://arxiv.org/abs/2604.21935v1", None),
    ],
)
def test_doi_from(text: str, expected: str | None) -> None:
    assert doi_from(text) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a/b", "https://example.com/a/b"),
        ("http://example.com/a/b", "https://example.com/a/b"),
        ("https://www.example.com/a/b", "https://example.com/a/b"),
        ("https://WWW.Example.COM/a/b", "https://example.com/a/b"),
        ("https://example.com/a/b/", "https://example.com/a/b"),
        ("https://example.com/a/b#section-2", "https://example.com/a/b"),
        ("  https://example.com/a/b  ", "https://example.com/a/b"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/", "https://example.com/"),
        ("https://example.com/A/Case", "https://example.com/A/Case"),  # path case kept
        ("https://example.com/p?id=3&x=y", "https://example.com/p?id=3&x=y"),  # query kept
    ],
)
def test_normalise_link(url: str, expected: str) -> None:
    assert normalise_link(url) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://www.golem.de/news/x.html", "https://golem.de/news/x.html"),
        ("https://Example.com/paper/", "https://example.com/paper#abstract"),
    ],
)
def test_normalise_link_trivial_spellings_compare_equal(a: str, b: str) -> None:
    assert normalise_link(a) == normalise_link(b)


def test_normalise_link_keeps_different_queries_apart() -> None:
    assert normalise_link("https://example.com/p?id=1") != normalise_link(
        "https://example.com/p?id=2"
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # arXiv wins over everything else
        (
            {"arxiv": "2604.21935v2", "doi": "10.1101/abc", "link": "https://example.com/x"},
            "2604.21935",
        ),
        ({"arxiv": "https://arxiv.org/abs/2604.21935v2", "link": "https://x.org/"}, "2604.21935"),
        ({"arxiv": "oai:arXiv.org:astro-ph/0601001v1"}, "astro-ph/0601001"),
        # DOI next
        ({"doi": "10.1101/ABC", "link": "https://example.com/x"}, "doi:10.1101/abc"),
        ({"doi": "https://doi.org/10.1101/2023.12.16.571984"}, "doi:10.1101/2023.12.16.571984"),
        # an arXiv value that is not an arXiv id falls through to the DOI
        ({"arxiv": "not-an-id", "doi": "10.1101/abc"}, "doi:10.1101/abc"),
        # link last, normalised
        ({"link": "http://www.Example.com/paper/"}, "url:https://example.com/paper"),
        # an unusable DOI falls through to the link
        ({"doi": "not a doi", "link": "https://example.com/p"}, "url:https://example.com/p"),
        ({"arxiv": "", "doi": "", "link": "https://example.com/p"}, "url:https://example.com/p"),
        # nothing identifies it
        ({}, None),
        ({"arxiv": None, "doi": None, "link": None}, None),
        ({"arxiv": "garbage", "doi": "garbage"}, None),
        ({"arxiv": "", "doi": "", "link": ""}, None),
    ],
)
def test_canonical_id_precedence(kwargs: dict[str, str | None], expected: str | None) -> None:
    assert canonical_id(**kwargs) == expected


def test_canonical_id_same_paper_different_versions_same_key() -> None:
    assert canonical_id(arxiv="2604.21935v1") == canonical_id(
        arxiv="https://arxiv.org/pdf/2604.21935v3"
    )
