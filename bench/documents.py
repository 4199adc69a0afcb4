"""Document reading throughput: MB/s for .docx and MB/s plus pages/s for PDF text extraction.

    python -m bench.documents [--quick] [--root DIR]

Generates a text-heavy ~5 MB .docx (paragraphs, lists, a table every 40 paragraphs) and a
~5 MB PDF of a few thousand pages once into `root`, then reads each in a child process (so
each read's peak RSS is its own), with full extraction and with the default `ReadLimits`
(what `read_file` does: it stops at 100 000 characters or 200 pages, so its MB/s is the file
size over the time to the first 100 000 characters). Prints numbers, asserts nothing.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_DOCX_TARGET = 5 * 1024 * 1024
_PDF_PAGES = 1200  # ~4 KB of content stream per page, uncompressed: ~5 MB
_UNLIMITED = {"max_chars": 10**12, "max_pdf_pages": 10**9, "max_input_bytes": 10**12, "max_xml_bytes": 10**12,
              "max_unzipped_bytes": 10**12}


def measure(root: Path, quick: bool) -> dict[str, Any]:
    """Blocking (generation and child processes); call through `anyio.to_thread.run_sync` from async code."""
    root.mkdir(parents=True, exist_ok=True)
    docx_path = _docx(root / "bench-5mb.docx")
    pdf_path = _pdf(root / "bench-pages.pdf")
    rounds = 1 if quick else 3
    out: dict[str, Any] = {"rounds": rounds}
    for kind, path in (("docx", docx_path), ("pdf", pdf_path)):
        for label, limits in (("full", _UNLIMITED), ("default_limits", {})):
            runs = [_child(path, limits) for _ in range(rounds)]
            best = min(runs, key=lambda r: r["seconds"])
            mb = path.stat().st_size / 1048576
            row = {"mb": round(mb, 2), "seconds": round(statistics.median(r["seconds"] for r in runs), 3),
                   "chars": best["chars"], "truncated": best["truncated"], "peak_rss_mb": best["peak_rss_mb"]}
            row["mb_per_s"] = round(mb / row["seconds"], 2)
            if kind == "pdf":
                row["pages"] = best["pages_read"]
                row["pages_per_s"] = round(best["pages_read"] / row["seconds"], 1)
            out[f"{kind}_{label}"] = row
    return out


def _child(path: Path, limits: dict[str, int]) -> dict[str, Any]:
    code = f"from bench.documents import _read_once; _read_once({str(path)!r}, {json.dumps(limits)})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent.parent)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _read_once(path: str, limits: dict[str, int]) -> None:
    import structlog

    from agentseat.documents import ReadLimits, read_document

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    started = time.perf_counter()
    result = read_document(Path(path), name=Path(path).name, mime=None, limits=ReadLimits(**limits))
    seconds = time.perf_counter() - started
    peak = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    print(json.dumps({"seconds": seconds, "chars": len(result.markdown), "truncated": result.truncated,
                      "pages_read": result.markdown.count("## Page "), "peak_rss_mb": round(peak, 1)}))


def _words(rng: random.Random) -> list[str]:
    letters = "etaoinshrdlucmfwypvbgkqjxz"
    weights = [12, 9, 8, 8, 7, 7, 6, 6, 6, 4, 4, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    return ["".join(rng.choices(letters, weights, k=rng.randint(2, 11))) for _ in range(20_000)]


def _sentence(rng: random.Random, vocab: list[str], n: int) -> str:
    return " ".join(rng.choice(vocab) for _ in range(n)).capitalize() + "."


def _docx(path: Path) -> Path:
    if path.exists():
        return path
    import docx

    rng = random.Random(13)
    vocab = _words(rng)
    document = docx.Document()
    n = 0
    while True:
        for _ in range(400):
            n += 1
            if n % 200 == 1:
                document.add_heading(_sentence(rng, vocab, 5), level=1 + (n // 200) % 3)
            elif n % 40 == 0:
                table = document.add_table(rows=6, cols=4)
                for row in table.rows:
                    for cell in row.cells:
                        cell.text = _sentence(rng, vocab, 3)
            elif n % 7 == 0:
                document.add_paragraph(_sentence(rng, vocab, 12), style="List Bullet")
            else:
                document.add_paragraph(" ".join(_sentence(rng, vocab, rng.randint(8, 20)) for _ in range(5)))
        document.save(str(path))
        if path.stat().st_size >= _DOCX_TARGET:
            return path


def _pdf(path: Path) -> Path:
    if path.exists():
        return path
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    rng = random.Random(13)
    vocab = _words(rng)
    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({  # pypdf has no public call to draw text; a hand-made page
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica")}))
    resources = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    for _ in range(_PDF_PAGES):
        page = writer.add_blank_page(width=612, height=792)
        page[NameObject("/Resources")] = resources
        lines = "".join(f"({_sentence(rng, vocab, 11)}) Tj T* " for _ in range(48))
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 9 Tf 11 TL 40 760 Td {lines}ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    with path.open("wb") as f:
        writer.write(f)
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.documents")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "agentseat-bench-documents")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.root, args.quick), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
