"""What a `%%kokoyi` cell shows: the models as display math, and a table of their shapes.

Both are IPython display objects returning a MIME bundle, so every front end gets a rendering:
`ModelMath` gives `text/latex` (display math) and `text/plain` (the same LaTeX); `ShapeTable` gives
`text/html` and an aligned `text/plain` table. The table reads only the class's `__kokoyi__` dict:

    role    name   shape           note
    hyper   d_in                   dim
    input   x      |V| × d_in      per node
    param   W      d_in × d_h      family of L
    param   f      → d_h           submodel MLP
    local   h      |V| × d_h       per node
    local   alpha  |E|             per edge, for each k
    output  o      |V| × C         per node

`local` rows are the intermediate definitions (`__kokoyi__["defs"]`), outputs excepted.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

_LEADING_AXIS = {"node": "|V|", "edge": "|E|", "plain": None}
_DOMAIN_NOTE = {"node": "per node", "edge": "per edge", "plain": "plain"}
_DELIMITERS = ("$", "\\[", "\\begin{equation", "\\begin{align", "\\begin{gather", "\\begin{multline")


def display_math(latex: str) -> str:
    """`latex` inside display-math delimiters (`$$ ... $$`) unless it already carries them."""
    body = latex.strip()
    if body.startswith(_DELIMITERS):
        return body
    return f"$$\n{body}\n$$"


@dataclass(frozen=True)
class ModelMath:
    """The rendered LaTeX of a cell's models (from `kokoyi.render`)."""

    latex: str

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/latex": display_math(self.latex), "text/plain": self.latex.strip()}


def shape_text(shape: list[str], domain: str | None = None) -> str:
    """`["d_in", "d_h"]` -> `d_in × d_h`; a node/edge row gains the leading `|V|`/`|E|` axis."""
    axes = list(shape)
    lead = _LEADING_AXIS.get(domain or "plain")
    if lead:
        axes.insert(0, lead)
    return " × ".join(str(a) for a in axes) if axes else "scalar"


def _hyper_row(h: dict) -> tuple[str, str, str, str]:
    note = h.get("kind", "dim")
    if h.get("default") is not None:
        note += f" = {h['default']}"
    if h.get("range"):
        note += f" in [{h['range'][0]:g}, {h['range'][1]:g}]"
    return ("hyper", h["name"], "", note)


def _value_row(role: str):
    def row(v: dict) -> tuple[str, str, str, str]:
        domain = v.get("domain", "plain")
        shape = shape_text(v.get("shape", []), domain)
        note = _DOMAIN_NOTE.get(domain, domain)
        if role == "local" and v.get("family"):  # a vectorised family: one value per head letter
            note += ", for each " + ", ".join(v["family"])
        return (role, v["name"], shape, note)
    return row


def _param_row(p: dict) -> tuple[str, str, str, str]:
    """A tensor (`d_in × d_h`, maybe a family of L of them) or a submodel (`→ d_h`, its output)."""
    shape, family, submodel = shape_text(p.get("shape", [])), p.get("family"), p.get("submodel")
    if submodel:
        return ("param", p["name"], f"→ {shape}", f"submodel {submodel}")
    return ("param", p["name"], shape, f"family of {family}" if family else "")


_SECTIONS = {  # __kokoyi__ key -> row builder, in table order
    "hypers": _hyper_row,
    "inputs": _value_row("input"),
    "params": _param_row,
    "defs": _value_row("local"),
    "outputs": _value_row("output"),
}
_HEADER = ("role", "name", "shape", "note")


def shape_rows(info: dict) -> list[tuple[str, str, str, str]]:
    """One `(role, name, shape, note)` row per hyperparameter, input, parameter, intermediate
    definition and output."""
    outputs = {o["name"] for o in info.get("outputs", [])}
    return [build(item) for key, build in _SECTIONS.items() for item in info.get(key, [])
            if not (key == "defs" and item["name"] in outputs)]


def _html_cell(column: str, text: str) -> str:
    """A table cell; names and shapes are set as code."""
    inner = html.escape(text)
    if text and column in ("name", "shape"):
        inner = f"<code>{inner}</code>"
    return f"<td style='text-align:left'>{inner}</td>"


@dataclass(frozen=True)
class ShapeTable:
    """The `__kokoyi__` summary of one compiled model as a compact table."""

    info: dict

    @property
    def title(self) -> str:
        depth = self.info.get("depth")
        return f"{self.info['name']}" + (f" (depth {depth})" if depth is not None else "")

    def text(self) -> str:
        rows = [_HEADER, *shape_rows(self.info)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join([self.title, *("  " + line for line in lines)])

    def html(self) -> str:
        head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in _HEADER)
        body = "".join("<tr>" + "".join(map(_html_cell, _HEADER, row)) + "</tr>"
                       for row in shape_rows(self.info))
        return (f"<table class='kokoyi-shapes'><caption style='text-align:left'>"
                f"<b>{html.escape(self.title)}</b></caption>"
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self.html(), "text/plain": self.text()}
