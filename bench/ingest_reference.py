"""The reference side of the per-format ingestion benchmark (`quarry-bench --formats`).

usage: python bench/ingest_reference.py DOCUMENTS_DIR EDGE_DIR MIN_SECONDS
  DOCUMENTS_DIR  shared/documents (read in place)
  EDGE_DIR       a scratch folder: the PDF edge cases are written there (truncated, encrypted, image-only),
                 then every PDF tool is run on them
  MIN_SECONDS    each tool repeats its whole file set until at least this much time has passed

Prints one JSON object on stdout. It holds the extracted texts, not scores: the Rust runner scores
Quarry and these tools with the same code. A tool whose package is missing is listed under
"not_run" with the import error; no number is ever made up for it.
Everything runs in this one process, on one thread, one file at a time.
"""
import csv
import logging
import io
import json
import os
import re
import sqlite3
import sys
import time
import traceback
from importlib.metadata import PackageNotFoundError, version

logging.disable(logging.WARNING)  # pypdf's font warnings are noise here
docs, edge_dir, min_secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
out = {"versions": {"python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version}, "not_run": {},
       "pdf": {}, "docx": {}, "html": {}, "csv": {}, "sql": {}}


def pkg_version(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def load_module(tool, importer, package):
    """Imports a tool's module, or records why it cannot run."""
    try:
        mod = importer()
        out["versions"][tool] = pkg_version(package)
        return mod
    except Exception as e:  # noqa: BLE001 - any import failure means "not run"
        out["not_run"][tool] = f"{type(e).__name__}: {e}"
        return None


def repeat(fn, items, min_secs):
    """Runs fn over every item until min_secs have passed. Returns (first-pass outputs, errors, s/pass, passes)."""
    outputs, errors = {}, {}
    start = time.perf_counter()
    passes = 0
    while True:
        for name, data in items:
            try:
                result = fn(data)
                if passes == 0:
                    outputs[name] = result
            except Exception as e:  # noqa: BLE001 - a failing file is reported, not fatal
                if passes == 0:
                    errors[name] = f"{type(e).__name__}: {e}"
        passes += 1
        if time.perf_counter() - start >= min_secs:
            break
    return outputs, errors, (time.perf_counter() - start) / passes, passes


def edge_behaviour(fn):
    """What a tool does on each edge-case PDF: its text size, or the exception it raised."""
    result = {}
    for name in sorted(os.listdir(edge_dir)):
        data = open(os.path.join(edge_dir, name), "rb").read()
        try:
            pages = fn(data)
            chars = sum(len(p.strip()) for p in pages)
            result[name] = f"ok: {len(pages)} page(s), {chars} chars"
        except Exception as e:  # noqa: BLE001
            result[name] = f"error: {type(e).__name__}: {str(e)[:120]}"
    return result


def files(folder, suffix):
    path = os.path.join(docs, folder)
    return [(n, open(os.path.join(path, n), "rb").read()) for n in sorted(os.listdir(path)) if n.endswith(suffix)]


# ---------------------------------------------------------------- PDF
pdfs = files("pdf", ".pdf")
pypdf = load_module("pypdf", lambda: __import__("pypdf"), "pypdf")
pymupdf = load_module("pymupdf", lambda: __import__("pymupdf"), "pymupdf")

os.makedirs(edge_dir, exist_ok=True)
crazy = dict(pdfs)["crazyones.pdf"]
with open(os.path.join(edge_dir, "truncated-half.pdf"), "wb") as f:
    f.write(crazy[: len(crazy) // 2])
if pypdf:
    for name, kwargs in [
        ("encrypted-rc4-user-password.pdf", {"user_password": "quarry", "owner_password": "owner"}),
        ("encrypted-aes256-user-password.pdf", {"user_password": "quarry", "owner_password": "owner",
                                                "algorithm": "AES-256"}),
        ("encrypted-owner-only.pdf", {"user_password": "", "owner_password": "owner"}),
    ]:
        try:
            writer = pypdf.PdfWriter(clone_from=io.BytesIO(crazy))
            writer.encrypt(**kwargs)
            with open(os.path.join(edge_dir, name), "wb") as f:
                writer.write(f)
        except Exception as e:  # noqa: BLE001
            out["not_run"][f"edge case {name}"] = f"{type(e).__name__}: {e}"
if pymupdf:
    doc = pymupdf.open()
    page = doc.new_page()
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 64, 64), 0)
    pix.clear_with(180)
    page.insert_image(pymupdf.Rect(72, 72, 472, 472), pixmap=pix)
    doc.save(os.path.join(edge_dir, "image-only.pdf"))

NICS = "nics-background-checks-2015-11.pdf"

if pypdf:
    def pypdf_pages(data):
        return [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(data)).pages]

    texts, errors, secs, passes = repeat(pypdf_pages, pdfs, min_secs)
    # pypdf has no table extractor: its layout mode lines, cut at runs of two or more spaces.
    layout = pypdf.PdfReader(io.BytesIO(dict(pdfs)[NICS])).pages[0].extract_text(extraction_mode="layout")
    rows = [re.split(r"\s{2,}", line.strip()) for line in layout.splitlines() if line.strip()]
    out["pdf"]["pypdf"] = {"texts": texts, "errors": errors, "seconds": secs, "passes": passes,
                           "tables": {NICS: rows}, "table_method": "layout-mode lines split at 2+ spaces",
                           "edge": edge_behaviour(pypdf_pages)}

if pymupdf:
    def mupdf_pages(data):
        with pymupdf.open(stream=data, filetype="pdf") as d:
            if d.needs_pass:
                raise RuntimeError("document needs a password")
            return [p.get_text() for p in d]

    texts, errors, secs, passes = repeat(mupdf_pages, pdfs, min_secs)
    with pymupdf.open(stream=dict(pdfs)[NICS], filetype="pdf") as d:
        rows = [[c or "" for c in row] for t in d[0].find_tables().tables for row in t.extract()]
    out["pdf"]["pymupdf"] = {"texts": texts, "errors": errors, "seconds": secs, "passes": passes,
                             "tables": {NICS: rows}, "table_method": "page.find_tables()",
                             "edge": edge_behaviour(mupdf_pages)}

# ---------------------------------------------------------------- DOCX
docx_files = files("docx", ".docx")
docx = load_module("python-docx", lambda: __import__("docx"), "python-docx")
mammoth = load_module("mammoth", lambda: __import__("mammoth"), "mammoth")
if docx:
    from docx.table import Table

    def python_docx_text(data):
        # Body paragraphs and tables in document order; a table as its cells' text, row by row.
        lines = []
        for block in docx.Document(io.BytesIO(data)).iter_inner_content():
            if isinstance(block, Table):
                for row in block.rows:
                    lines.append(" | ".join(cell.text for cell in row.cells))
            else:
                lines.append(block.text)
        return "\n".join(lines)

    texts, errors, secs, passes = repeat(python_docx_text, docx_files, min_secs)
    out["docx"]["python-docx"] = {"texts": texts, "errors": errors, "seconds": secs, "passes": passes}
if mammoth:
    texts, errors, secs, passes = repeat(lambda d: mammoth.extract_raw_text(io.BytesIO(d)).value,
                                         docx_files, min_secs)
    out["docx"]["mammoth"] = {"texts": texts, "errors": errors, "seconds": secs, "passes": passes}

# ---------------------------------------------------------------- HTML
html_dir = os.path.join(docs, "html")
pages = [(n, open(os.path.join(html_dir, n, "source.html"), encoding="utf-8").read())
         for n in sorted(os.listdir(html_dir))]
bs4 = load_module("beautifulsoup4", lambda: __import__("bs4"), "beautifulsoup4")
trafilatura = load_module("trafilatura", lambda: __import__("trafilatura"), "trafilatura")
readability = load_module("readability-lxml", lambda: __import__("readability"), "readability-lxml")
if bs4:
    texts, errors, secs, passes = repeat(lambda h: bs4.BeautifulSoup(h, "lxml").get_text(" "), pages, min_secs)
    out["html"]["BeautifulSoup get_text (whole page)"] = {"texts": texts, "errors": errors, "seconds": secs,
                                                          "passes": passes}
if trafilatura:
    texts, errors, secs, passes = repeat(lambda h: trafilatura.extract(h) or "", pages, min_secs)
    out["html"]["trafilatura.extract"] = {"texts": texts, "errors": errors, "seconds": secs, "passes": passes}
if readability:
    import lxml.html

    def readability_text(h):
        summary = readability.Document(h).summary()
        return " ".join(lxml.html.fromstring(summary).itertext())

    texts, errors, secs, passes = repeat(readability_text, pages, min_secs)
    out["html"]["readability-lxml summary"] = {"texts": texts, "errors": errors, "seconds": secs,
                                               "passes": passes}

# ---------------------------------------------------------------- CSV
spectrum_dir = os.path.join(docs, "csv", "csv-spectrum")
spectrum = {}
for name in sorted(os.listdir(spectrum_dir)):
    if name.endswith(".csv"):
        with open(os.path.join(spectrum_dir, name), newline="", encoding="utf-8") as f:
            got = list(csv.DictReader(f))
        want = json.load(open(os.path.join(spectrum_dir, name[:-4] + ".expected.json"), encoding="utf-8"))
        spectrum[name] = "exact" if got == want else f"differs: {json.dumps(got)[:200]}"
tracks = open(os.path.join(docs, "csv", "chinook-tracks.csv"), encoding="utf-8", newline="").read()
rows, _, secs, passes = repeat(lambda t: len(list(csv.DictReader(io.StringIO(t, newline="")))),
                               [("chinook-tracks.csv", tracks)], min_secs)
out["csv"]["csv.DictReader"] = {"rows": rows["chinook-tracks.csv"], "seconds": secs, "passes": passes,
                                "spectrum": spectrum}

# ---------------------------------------------------------------- SQL
dump = open(os.path.join(docs, "sql", "Chinook_Sqlite.sql"), encoding="utf-8").read()


def sqlite_rows(script):
    con = sqlite3.connect(":memory:")
    con.executescript(script)
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY rowid")]
    counts = {n: len(con.execute(f'SELECT * FROM "{n}"').fetchall()) for n in names}
    con.close()
    return counts


counts, errors, secs, passes = repeat(sqlite_rows, [("Chinook_Sqlite.sql", dump)], min_secs)
out["sql"]["sqlite3 executescript + SELECT *"] = {"counts": counts.get("Chinook_Sqlite.sql", {}), "errors": errors,
                                                  "seconds": secs, "passes": passes}

try:
    json.dump(out, sys.stdout, ensure_ascii=False)
except Exception:  # noqa: BLE001
    traceback.print_exc()
    sys.exit(1)
