"""`report.html`: the Markdown report as one self-contained page (figures inline, tables sortable).

The page is rendered from `report.md`'s text, so the two can never disagree: a small converter for the
Markdown the report writes (headings, paragraphs, lists, tables, bold, italics, code, images). All
text is HTML-escaped before any markup is added; figures are embedded as base64 PNG; the only script
is the inline table sorter below. No network access is needed to view it.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from pipeline.report_md import render

STYLE = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1,h2,h3,h4{line-height:1.25}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:13px;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top}th{background:#f3f3f3;cursor:pointer;user-select:none}
th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums}code{background:#f3f3f3;padding:0 .2em;border-radius:3px}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:13px;color:#555}
"""

SORTER = """
document.querySelectorAll('table').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,col){
    th.title='click to sort';
    th.addEventListener('click',function(){
      var body=t.tBodies[0],rows=Array.from(body.rows),asc=!th.classList.contains('asc');
      t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc')});
      th.classList.add(asc?'asc':'desc');
      function key(r){var s=(r.cells[col]||{}).textContent||'';var n=parseFloat(s.replace(/[^0-9eE.+-]/g,''));
        return isNaN(n)||!/\\d/.test(s)?s.toLowerCase():n}
      rows.sort(function(a,b){var x=key(a),y=key(b);
        if(typeof x!==typeof y){x=String(x);y=String(y)}return (x<y?-1:x>y?1:0)*(asc?1:-1)});
      rows.forEach(function(r){body.appendChild(r)});
    });
  });
});
"""

_NUMERIC = re.compile(r"^[\s+\-<]*[\d.]+(e[+-]?\d+)?%?(\s*\(.*\))?$", re.I)


def inline(text: str) -> str:
    """Escaped text with the report's inline Markdown: **bold**, *italic*, `code`, and <br> line breaks."""
    out = html.escape(text, quote=True)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", out)
    return out.replace("&lt;br&gt;", "<br>").replace("\\|", "|")


def _cells(line: str) -> list[str]:
    body = line.strip()[1:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", body)]


def _table(lines: list[str]) -> str:
    head, rows = _cells(lines[0]), [_cells(r) for r in lines[2:]]
    out = ["<table><thead><tr>", *(f"<th>{inline(c)}</th>" for c in head), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="num">{inline(c)}</td>' if _NUMERIC.match(c) else f"<td>{inline(c)}</td>"
                                    for c in r) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _image(caption: str, src: str, run: Path) -> str:
    path = (run / src).resolve()
    if not (path.is_file() and path.suffix.lower() == ".png" and run.resolve() in path.parents):
        return f"<p><em>{inline(caption)}: figure missing ({inline(src)})</em></p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{inline(caption)}</figcaption></figure>")


def markdown_to_html(md: str, run: Path) -> str:
    """The body of the page for the Markdown `md` (figures are read relative to `run`)."""
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"^(#{1,4}) (.*)$", line):
            out.append(f"<h{len(m[1])}>{inline(m[2])}</h{len(m[1])}>")
            i += 1
        elif m := re.match(r"^!\[([^\]]*)\]\(([^)]+)\)\s*$", line):
            out.append(_image(m[1], m[2], run))
            i += 1
            while i < len(lines) and (not lines[i].strip() or re.match(r"^\*[^*].*\*$", lines[i])):
                i += 1  # the italic caption line under the image is already the figcaption
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_table(block))
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\||- |!\[)", lines[i]):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{inline(' '.join(para))}</p>")
    return "\n".join(out)


def render_html(data: dict, run: Path) -> str:
    """The whole page for the report dict `data` (rendered to Markdown first, then converted)."""
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(data['title'])}</title><style>{STYLE}</style></head><body>"
            f"{markdown_to_html(render(data), run)}<script>{SORTER}</script></body></html>\n")
