"""bench/results holds only what bench/README.md's table says it keeps, and every result file the
docs cite is one of them: a rerun with another name, a variant left behind or a deleted file still
quoted fails here."""

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
MOST = 15  # one JSON and one Markdown per bench and device, plus the serving sweep's plot


def expand(name: str) -> list[str]:
    """`quality.{json,md}` → quality.json, quality.md (shell brace expansion, one level)."""
    match = re.search(r"\{([^{}]*)\}", name)
    if not match:
        return [name]
    head, tail = name[: match.start()], name[match.end() :]
    return [f"{head}{option}{tail}" for option in match.group(1).split(",")]


def kept() -> list[str]:
    """The file names (`<device>` a wildcard) in the last column of bench/README.md's bench table."""
    names = []
    for line in (ROOT / "bench" / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) > 1 and cells[0].startswith("`bench."):
            for name in re.findall(r"`([^`]+)`", cells[-1]):
                names += expand(name)
    return names


def matches(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, re.sub(r"<[a-z]+>", "*", pattern))


def test_the_table_keeps_one_json_and_markdown_per_bench_and_device_and_plots():
    names = kept()
    assert names, "bench/README.md's bench table lists no kept file"
    assert len(names) <= MOST, names
    assert all(Path(name).suffix in {".json", ".md", ".png"} for name in names), names


def test_bench_results_holds_exactly_the_kept_files():
    held = sorted(path.name for path in RESULTS.iterdir())
    names = kept()
    stray = [name for name in held if not any(matches(name, pattern) for pattern in names)]
    assert not stray, f"bench/results holds files no bench keeps (bench/README.md): {stray}"
    missing = [pattern for pattern in names if "<" not in pattern and pattern not in held]
    assert not missing, f"bench/README.md keeps files bench/results lacks: {missing}"
    assert len(held) <= MOST, held


def test_every_cited_result_file_is_kept():
    names = kept()
    documents = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    cited = {
        (document.relative_to(ROOT).as_posix(), name)
        for document in documents
        for cited_name in re.findall(r"bench/results/([\w.<>{},-]+)", document.read_text())
        for name in expand(cited_name)
    }
    unknown = sorted(
        (document, name)
        for document, name in cited
        if not (name in names and (RESULTS / name).exists())
        and not any("<" in pattern and matches(name, pattern) for pattern in names)
    )
    assert cited, "no document cites a file of bench/results"
    assert not unknown, f"documents cite result files bench/results does not keep: {unknown}"
