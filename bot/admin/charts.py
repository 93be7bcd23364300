"""Charts as server-side SVG (pygal): inline in the page, no script, nothing fetched at run time.

pygal writes a ``<script>`` with its config into every chart even with ``js=()`` (svg.py ``add_scripts``),
and a tooltip group with an inline ``style`` that only its script uses; an XML filter takes both out,
so the dashboard's Content-Security-Policy can forbid script and inline style attributes.
"""
from __future__ import annotations

from collections.abc import Sequence

import pygal
from markupsafe import Markup
from pygal.style import Style

FONT = "'Noto Sans CJK SC', 'WenQuanYi Micro Hei', 'Microsoft YaHei', 'PingFang SC', sans-serif"
# Series that are not tiers: outcomes of pushes, kinds of points (fixed, so a kind keeps its colour).
OTHER_COLOURS = ("#2e7d32", "#c62828", "#f9a825", "#6d4c41", "#546e7a", "#00838f", "#ad1457", "#3949ab")
# One colour per item of a longer list (gifts, events), in its order: the item keeps it across charts.
ITEM_COLOURS = OTHER_COLOURS + ("#7cb342", "#ef6c00", "#8e24aa", "#0277bd", "#9e9d24", "#5d4037", "#e53935",
                                "#00695c")


def item_colours(count: int) -> list[str]:
    return [ITEM_COLOURS[i % len(ITEM_COLOURS)] for i in range(count)]


def _style(colours: Sequence[str]) -> Style:
    return Style(
        colors=tuple(colours) or OTHER_COLOURS, font_family=FONT, background="white", plot_background="white",
        foreground="#333", foreground_strong="#111", foreground_subtle="#888", opacity="0.9", opacity_hover="1",
        title_font_size=16, label_font_size=12, major_label_font_size=12, legend_font_size=13,
        value_font_size=11, no_data_font_size=16,
    )


def render(kind: str, title: str, x_title: str, y_title: str, x_labels: Sequence[str],
           series: Sequence[tuple[str, Sequence[float | int | None]]], colours: Sequence[str] = (),
           empty: str = "", stacked: bool = False, percent: bool = False, legend_columns: int = 6,
           height: int = 360) -> Markup:
    """An SVG chart: ``kind`` "bar" or "line"; ``series`` (name, values by x label); ``empty`` says why there is none.

    Axis titles carry the units; ``colours`` gives each series its colour (the tiers' from config.yaml).
    Long series names (gifts, events) want fewer ``legend_columns`` and more ``height``.
    """
    chart_class = {"bar": pygal.StackedBar if stacked else pygal.Bar, "line": pygal.Line}[kind]
    chart = chart_class(
        style=_style(colours or OTHER_COLOURS[:len(series)]), js=(), disable_xml_declaration=True,
        width=860, height=height, explicit_size=False, title=title, x_title=x_title, y_title=y_title,
        legend_at_bottom=True, legend_at_bottom_columns=min(len(series), legend_columns) or 1,
        show_minor_y_labels=False,
        print_values=False, no_data_text=empty, truncate_legend=-1, truncate_label=-1 if len(x_labels) <= 8 else None, x_label_rotation=0 if len(x_labels) <= 12 else 30,
        value_formatter=(lambda v: f"{v:.1f}%") if percent else (lambda v: f"{v:,.0f}"),
        range=(0, 100) if percent else None, include_x_axis=True,
    )
    chart.add_xml_filter(_without_script)
    chart.x_labels = list(x_labels)
    if any(v for _, values in series for v in values):
        for name, values in series:
            chart.add(name, [None if v is None else float(v) for v in values])
    return Markup(chart.render(is_unicode=True))


def _without_script(root):
    """The SVG tree without pygal's config script (in ``<defs>``) and its script-driven tooltip overlay
    (in the graph's ``<g>``): both sit just below a child of the root."""
    for parent in list(root):
        for child in list(parent):
            if child.tag == "script" or "tooltip-overlay" in (child.get("class") or ""):
                parent.remove(child)
    return root
