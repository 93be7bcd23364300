"""Monthly bulletins: one Markdown file a month in the folder the rules name (``bulletins/2026-12.md``).

WeChat shows neither Markdown in a customer-service text nor more than 20 characters a line in a
template, so a bulletin goes as plain text (``plain_text``: marks dropped, a link as "text (url)")
or as a template with its title and a link to the whole of it, which the bot serves as a page
(``page_html``, at ``/bulletins/<month>``).
"""
from __future__ import annotations

import re
from html import escape
from pathlib import Path

from rules import ROOT, Rules

MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")  # what a bulletin is named by: 2026-12
_INLINE = re.compile(
    r"!?\[(?P<label>[^\]]*)\]\((?P<url>[^)\s]+)(?:\s+\"[^\"]*\")?\)"  # [text](url), ![alt](url "title")
    r"|<(?P<auto>https?://[^>\s]+)>"  # <https://…>
    r"|(?P<mark>\*\*|__|~~|\*|`)(?P<inner>(?=\S).*?(?<=\S))(?P=mark)"  # **strong**, __strong__, ~~gone~~, *em*, `code`
    r"|(?<!\w)_(?P<under>(?=\S).*?(?<=\S))_(?!\w)"  # _em_ (not inside a word: snake_case stays)
)
_BLOCK = re.compile(r"^ {0,3}(?:(?P<heading>#{1,6})\s+|(?P<quote>>)\s?|(?P<bullet>[-*+])\s+|(?P<number>\d{1,9}[.)])\s+)?"
                    r"(?P<text>.*?)(?:\s+#+)?\s*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:\s*\1){2,}\s*$")  # ---, ***, ___
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def bulletin_path(rules: Rules, month: str) -> Path:
    folder = Path(rules.jobs.monthly_bulletin.folder)
    return (folder if folder.is_absolute() else ROOT / folder) / f"{month}.md"


def read_bulletin(rules: Rules, month: str, cache: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """The month's bulletin as plain text: (title, text), the title being the file's first line."""
    if month not in cache:
        text = plain_text(bulletin_path(rules, month).read_text(encoding="utf-8"))
        cache[month] = (text.splitlines()[0] if text else month, text)
    return cache[month]


def _blocks(markdown: str) -> list[tuple[str, str]]:
    """The file's lines as (kind, text): heading1..6, quote, bullet, number (text keeps its "1."), line, blank."""
    out: list[tuple[str, str]] = []
    fenced = False
    for raw in markdown.replace("\r\n", "\n").split("\n"):
        if _FENCE.match(raw):
            fenced = not fenced
            continue
        if fenced:
            out.append(("code", raw.rstrip()))
            continue
        if not raw.strip() or _RULE.match(raw):
            out.append(("blank", ""))
            continue
        found = _BLOCK.match(raw)
        kind = (f"heading{len(found['heading'])}" if found["heading"] else "quote" if found["quote"] else
                "bullet" if found["bullet"] else "number" if found["number"] else "line")
        out.append((kind, f"{found['number']} {found['text']}" if found["number"] else found["text"]))
    return out


def _inline(text: str, html: bool) -> str:
    """One line's inline Markdown as plain text (marks dropped, links as "text (url)") or as HTML."""
    out, at = [], 0
    for found in _INLINE.finditer(text):
        out.append(escape(text[at:found.start()]) if html else text[at:found.start()])
        at = found.end()
        url = found["url"] or found["auto"]
        if url is not None:
            label = _inline(found["label"] or "", html=False) or url
            if not html:
                out.append(url if label == url else f"{label} ({url})")
            elif url.startswith(("https://", "http://", "/")):
                out.append(f'<a href="{escape(url)}">{escape(label)}</a>')
            else:  # javascript: and the like are not links here
                out.append(escape(f"{label} ({url})"))
        elif found["mark"] == "`":
            out.append(f"<code>{escape(found['inner'])}</code>" if html else found["inner"])
        else:
            inner = _inline(found["inner"] or found["under"], html)
            tag = {"**": "strong", "__": "strong", "~~": "s"}.get(found["mark"] or "", "em")
            out.append(f"<{tag}>{inner}</{tag}>" if html else inner)
    out.append(escape(text[at:]) if html else text[at:])
    return "".join(out)


def plain_text(markdown: str) -> str:
    """A bulletin as a customer-service text: headings and quotes as their words, list items with "·",
    emphasis marks dropped, a link as "text (url)"; one blank line at most between paragraphs."""
    lines: list[str] = []
    for kind, text in _blocks(markdown):
        if kind == "blank":
            if lines and lines[-1]:
                lines.append("")
            continue
        body = text if kind == "code" else _inline(text, html=False)
        lines.append(f"· {body}" if kind == "bullet" else body)
    return "\n".join(lines).strip()


def page_html(month: str, markdown: str) -> str:
    """A bulletin as the small page a template's link opens on a phone."""
    body: list[str] = []
    open_list: str | None = None
    title = month
    for kind, text in _blocks(markdown):
        wanted = "ul" if kind == "bullet" else "ol" if kind == "number" else None
        if open_list and open_list != wanted:
            body.append(f"</{open_list}>")
            open_list = None
        if wanted and not open_list:
            body.append(f"<{wanted}>")
            open_list = wanted
        if kind == "blank":
            continue
        if kind.startswith("heading"):
            if title == month:
                title = _inline(text, html=False)
            body.append(f"<h{kind[-1]}>{_inline(text, html=True)}</h{kind[-1]}>")
        elif wanted == "ol":
            body.append(f"<li>{_inline(text.split(' ', 1)[-1], html=True)}</li>")
        elif wanted:
            body.append(f"<li>{_inline(text, html=True)}</li>")
        elif kind == "code":
            body.append(f"<pre>{escape(text)}</pre>")
        else:
            body.append(f"<{'blockquote' if kind == 'quote' else 'p'}>{_inline(text, html=True)}"
                        f"</{'blockquote' if kind == 'quote' else 'p'}>")
    if open_list:
        body.append(f"</{open_list}>")
    return ("<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title>"
            "<style>body{font:16px/1.7 sans-serif;max-width:40em;margin:1em auto;padding:0 1em;color:#222}"
            "h1{font-size:1.4em}a{color:#9a6b1f}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
