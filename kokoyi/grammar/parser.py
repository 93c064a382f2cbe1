"""Text -> AST. The grammar (`kokoyi.lark`) is the single source of syntax; this file holds

* `BarPairer`, a token-stream pass that tells an opening `|` from a closing one and splits
  `x_uW` into `x_u W` (a LaTeX script takes one character unless braced);
* `ToAst`, a Lark `Transformer` with one method per tree shape;
* `parse(source, path)`, which also refuses empty files, non-UTF-8 bytes and absurd nesting with a
  clean diagnostic.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from kokoyi.diagnostics import Diagnostic, KokoyiError, Span
from kokoyi.grammar import ast as A

MAX_NUMBER = 2 ** 53  # integers above this are not exact in float64: refused (no layer needs one)
MAX_DEPTH = 64  # brackets nested deeper than this are refused (the paper that needs it does not exist)
MAX_BYTES = 1 << 20

# tokens after which a `|` closes an open bar rather than opening a new one
_OPERAND_END = {"LETTER", "ALPHANUM", "DIGIT", "NUMBER", "CMD", "TOP", "PRIME", "RPAR", "RSQB", "RBRACE",
                "RBAR", "RNORM", "RBRACE_ESC", "CAL", "BB"}
_BARS = {"BAR": ("LBAR", "RBAR"), "DBAR": ("LNORM", "RNORM")}
_FORCED = {"\\lvert": "LBAR", "\\rvert": "RBAR"}


class Refused(Exception):
    """A token or tree the grammar accepts but the language refuses; carries its diagnostic."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


class BarPairer:
    """Post-lexer: pair `|`/`\\|` into open/close tokens; split unbraced multi-character scripts."""

    always_accept = ("BAR", "DBAR", "AMP")

    def process(self, stream):
        stack: list[str] = []
        prev = None
        after_script = False
        cases = 0  # depth of \\begin{cases}: there `&` separates a value from its condition
        for tok in stream:
            if tok.type == "BEGIN_CASES":
                cases += 1
            elif tok.type == "END_CASES":
                cases = max(cases - 1, 0)
            elif tok.type == "AMP" and not cases:
                continue  # alignment noise
            if after_script and tok.type == "NUMBER" and not tok.value[0].isdigit():  # `x_.5`
                raise Refused(Diagnostic(f"a script of more than one character needs braces: {{{tok.value}}}",
                                         _tok_span("", tok)))
            if after_script and tok.type in ("ALPHANUM", "NUMBER") and len(tok.value) > 1:
                head, rest = tok.value[0], tok.value[1:]
                yield self._piece(tok, "LETTER" if head.isalpha() else "DIGIT", head, 0)
                if rest:
                    kind = ("ALPHANUM" if len(rest) > 1 else "LETTER") if rest[0].isalpha() else (
                        "NUMBER" if len(rest) > 1 else "DIGIT")
                    if kind == "ALPHANUM" and not rest.isalpha():
                        kind = "ALPHANUM"
                    tok = self._piece(tok, kind, rest, 1)
                else:
                    prev, after_script = tok, False
                    continue
            after_script = tok.type in ("SUB", "SUP")
            if tok.type in _BARS:
                open_t, close_t = _BARS[tok.type]
                forced = _FORCED.get(tok.value)
                closing = forced == close_t or (
                    forced is None and stack and stack[-1] == tok.type and prev is not None
                    and prev.type in _OPERAND_END)
                if closing and stack and stack[-1] == tok.type:
                    stack.pop()
                    tok = Token.new_borrow_pos(close_t, tok.value, tok)
                else:
                    stack.append(tok.type)
                    tok = Token.new_borrow_pos(open_t, tok.value, tok)
            prev = tok
            yield tok

    @staticmethod
    def _piece(tok: Token, type_: str, value: str, offset: int) -> Token:
        start = tok.start_pos + offset
        return Token(type_, value, start, tok.line, tok.column + offset, tok.end_line,
                     tok.column + offset + len(value), start + len(value))


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = (Path(__file__).parent / "kokoyi.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="basic", postlex=BarPairer(), propagate_positions=True,
                maybe_placeholders=True)


# ------------------------------------------------------------------ tree -> AST
def _tok_span(text: str, tok: Token) -> Span:
    return Span(tok.start_pos, tok.end_pos, tok.line, tok.column)


_BINOPS = {"+": "+", "-": "-", "*": "*", "@": "@", "/": "/", "\\cdot": "cdot", "\\odot": "odot",
           "\\times": "times", "\\ast": "*", "\\circ": "odot", "\\otimes": "times", "**": "**"}
_CMPS = {"<": "lt", ">": "gt", "<=": "le", ">=": "ge", "\\lt": "lt", "\\gt": "gt", "\\le": "le", "\\leq": "le",
         "\\leqslant": "le", "\\ge": "ge", "\\geq": "ge", "\\geqslant": "ge", "\\ne": "ne", "\\neq": "ne"}
_BIGOPS = {"\\sum": "sum", "\\max": "max", "\\min": "min", "\\prod": "prod", "\\mean": "mean"}


class ToAst(Transformer):
    """One method per tree shape of kokoyi.lark."""

    def __init__(self, text: str):
        super().__init__(visit_tokens=False)
        self.text = text

    # spans ---------------------------------------------------------------
    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(0, 0, 1, 1)
        return Span(meta.start_pos, meta.end_pos, meta.line, meta.column)

    def _t(self, tok: Token) -> Span:
        return _tok_span(self.text, tok)

    # program -------------------------------------------------------------
    @v_args(meta=True)
    def start(self, meta, models):
        return [m for m in models]

    @v_args(meta=True)
    def model(self, meta, items):
        _, name, body, _ = items
        # the name as written, not its kept tokens (`_` is kept: `my_model` is not `mymodel`);
        # `My-GCN` names the class My_GCN (a Python identifier)
        text = "".join(self.text[name[1].start:name[1].end].split()).replace("-", "_")
        return A.Model(self._span(meta), text, name[1], body)

    def body(self, items):
        return [s for s in items if s is not None]

    @v_args(meta=True)
    def word(self, meta, toks):
        return ("".join(str(t) for t in toks), self._span(meta))

    # statements ----------------------------------------------------------
    @v_args(meta=True)
    def hyper_stmt(self, meta, items):
        return [A.Hyper(h.span, h.target, h.space, h.default, self._span(meta)) for h in items[1:]]

    @v_args(meta=True)
    def hyper_item(self, meta, items):
        target, _in, space, default = items
        return A.Hyper(self._span(meta), target, space, default)

    @v_args(meta=True)
    def input_stmt(self, meta, items):
        return A.Input(self._span(meta), items[1], items[3])

    @v_args(meta=True)
    def param_stmt(self, meta, items):
        _, target, _in, space, init, family = items
        kind, value = init if init else (None, None)
        return A.Param(self._span(meta), target, space, value, kind, family)

    @v_args(meta=True)
    def submodel_stmt(self, meta, items):
        _, target, _sim, expr, family = items
        return A.Param(self._span(meta), target, None, family=family, submodel=expr)

    def init_value(self, items):
        return ("=", items[0])

    def init_dist(self, items):
        return ("sim", items[1])

    @v_args(meta=True)
    def return_stmt(self, meta, items):
        return A.Return(self._span(meta), list(items[1:]))

    @v_args(meta=True)
    def def_stmt(self, meta, items):
        target, _gets, expr, family = items
        return A.Def(self._span(meta), target, expr, family)

    @v_args(meta=True)
    def range_family(self, meta, items):
        var, lo, _dots, hi = items
        return A.Range(self._span(meta), var, lo=lo, hi=hi)

    @v_args(meta=True)
    def set_family(self, meta, items):
        return A.Range(self._span(meta), items[0], set=items[2])

    @v_args(meta=True)
    def space(self, meta, items):
        bb, dims = items
        field = bb.value.replace(" ", "")[-2]
        dim_list = _split_times(dims) if dims is not None else []
        return A.Space(self._span(meta), field, dim_list)

    # expressions ---------------------------------------------------------
    @v_args(meta=True)
    def concat(self, meta, items):
        node = items[0]
        for tok, right in zip(items[1::2], items[2::2]):
            node = A.BinOp(node.span.join(right.span), "concat", node, right, self._t(tok))
        return node

    @v_args(meta=True)
    def binop(self, meta, items):
        left, tok, right = items
        return A.BinOp(self._span(meta), _BINOPS[str(tok)], left, right, self._t(tok))

    @v_args(meta=True)
    def juxt(self, meta, items):
        left, right = items
        return A.BinOp(self._span(meta), "juxt", left, right)

    @v_args(meta=True)
    def neg(self, meta, items):
        return A.Neg(self._span(meta), items[1])

    def signed(self, items):  # unary plus
        return items[-1]

    @v_args(meta=True)
    def bigop(self, meta, items):
        head, *scripts, operand = items
        sub = sup = None
        for kind, node, _p in scripts:
            if kind == "sub":
                sub = node
            elif kind == "sup":
                sup = node
        op = "concat" if head.type == "BIGVERT" else "mean" if head.type == "MEAN" else _BIGOPS[str(head)]
        return A.BigOp(self._span(meta), op, sub, sup, operand)

    @v_args(meta=True)
    def bigop_call(self, meta, items):
        head, *args = items
        name = "mean" if head.type == "MEAN" else _BIGOPS[str(head)]
        return A.FuncCall(self._span(meta), name, list(args))

    @v_args(meta=True)
    def scripted_expr(self, meta, items):
        return self._scripted(meta, items)

    @v_args(meta=True)
    def scripted(self, meta, items):
        return self._scripted(meta, items)

    def _scripted(self, meta, items):
        base, *scripts = items
        if not scripts:
            return base
        node = A.Scripted(self._span(meta), base)
        for kind, arg, span in scripts:
            if kind == "prime":
                node.primes += 1
                continue
            slot = "sub" if kind == "sub" else "sup"
            if getattr(node, slot) is not None:  # `x_u_v`, `x^2^2`: TeX's "Double subscript/superscript"
                what = "subscript" if slot == "sub" else "superscript"
                example = "{x^{2}}^{2}" if slot == "sup" else "x_{uv}"
                raise Refused(Diagnostic(f"double {what}", span, f"group it, as TeX requires: {example}"))
            setattr(node, slot, arg)
        return node

    def sub(self, items):
        return ("sub", items[1], items[1].span)

    def sup(self, items):
        return ("sup", items[1], items[1].span)

    @v_args(meta=True)
    def prime(self, meta, items):
        return ("prime", None, self._t(items[0]))

    @v_args(meta=True)
    def script_arg(self, meta, items):
        (item,) = items
        if isinstance(item, Token):
            return self._token_atom(item)
        return item

    @v_args(meta=True)
    def tuple(self, meta, items):
        return A.Tuple(self._span(meta), list(items))

    @v_args(meta=True)
    def membership(self, meta, items):
        return A.Membership(self._span(meta), items[0], items[2])

    @v_args(meta=True)
    def binding(self, meta, items):
        return A.Binding(self._span(meta), items[0], items[1])

    @v_args(meta=True)
    def set_expr(self, meta, items):
        return A.SetUnion(self._span(meta), [i for i in items if not isinstance(i, Token)])

    @v_args(meta=True)
    def set_literal(self, meta, items):
        return A.SetLiteral(self._span(meta), [i for i in items if not isinstance(i, Token)])

    # atoms ---------------------------------------------------------------
    def _token_atom(self, tok: Token):
        span = self._t(tok)
        t, v = tok.type, str(tok)
        if t in ("NUMBER", "DIGIT"):
            value = float(v) if "." in v else int(v)
            if abs(value) > MAX_NUMBER:
                raise Refused(Diagnostic(f"number too large: {v[:20]}{'...' if len(v) > 20 else ''}", span,
                                         f"numbers are at most 2^53 = {MAX_NUMBER}"))
            return A.Num(span, value, v)
        if t == "LETTER":
            return A.Sym(span, v, "letter")
        if t == "ALPHANUM":
            return A.Sym(span, v, "word")
        if t == "TOP":
            return A.Sym(span, "top", "command")
        if t == "PRIME":  # `h^\prime`
            return A.Sym(span, "prime", "command")
        if t == "BIGOP":
            return A.Sym(span, v[1:], "command")
        return A.Sym(span, v[1:], "command")

    def letter(self, items):
        return self._token_atom(items[0])

    def word_atom(self, items):
        return self._token_atom(items[0])

    def command(self, items):
        return self._token_atom(items[0])

    def number(self, items):
        return self._token_atom(items[0])

    @v_args(meta=True)
    def font(self, meta, items):
        _font, (name, _span) = items
        kind = "letter" if len(name) == 1 and name.isalpha() else "word"
        if name.startswith("\\"):
            kind, name = "command", name[1:]
        return A.Sym(self._span(meta), name, kind)

    @v_args(meta=True)
    def accent(self, meta, items):
        tok, inner = items
        accent = str(tok)[1:].replace("wide", "").replace("overline", "bar")
        target = inner
        if isinstance(target, A.Scripted):
            base = target.base
            if isinstance(base, A.Sym):
                base.accent = accent
                target.span = self._span(meta)
                return target
        if isinstance(target, A.Sym):
            target.accent = accent
            target.span = self._span(meta)
            return target
        return target

    def accent_arg(self, items):
        (item,) = items
        return self._token_atom(item) if isinstance(item, Token) else item

    @v_args(meta=True)
    def calligraphic(self, meta, items):
        letter = str(items[0]).split("{")[1].strip(" }")
        return A.Sym(self._span(meta), letter, "cal")

    @v_args(meta=True)
    def blackboard(self, meta, items):
        letter = str(items[0]).split("{")[1].strip(" }")
        return A.Sym(self._span(meta), letter, "bb")

    @v_args(meta=True)
    def paren(self, meta, items):
        return A.Group(self._span(meta), items[0], "(")

    @v_args(meta=True)
    def paren_tuple(self, meta, items):
        return A.Group(self._span(meta), A.Tuple(self._span(meta), list(items)), "(")

    @v_args(meta=True)
    def bracket(self, meta, items):
        return A.Group(self._span(meta), items[0], "[")

    @v_args(meta=True)
    def group(self, meta, items):
        return A.Group(self._span(meta), items[0], "{")

    @v_args(meta=True)
    def frac(self, meta, items):
        return A.Frac(self._span(meta), items[1], items[2])

    @v_args(meta=True)
    def sqrt(self, meta, items):
        return A.Sqrt(self._span(meta), items[1])

    @v_args(meta=True)
    def abs(self, meta, items):
        return A.Abs(self._span(meta), [i for i in items if not isinstance(i, Token)][0])

    @v_args(meta=True)
    def abs_union(self, meta, items):
        parts = [i for i in items if not isinstance(i, Token)]
        return A.Abs(self._span(meta), A.SetUnion(parts[0].span.join(parts[-1].span), parts))

    # cases and indicators (stage 2) ---------------------------------------
    @v_args(meta=True)
    def cases(self, meta, items):
        return A.Cases(self._span(meta), [i for i in items if isinstance(i, tuple)])

    def case_row(self, items):
        return (items[0], items[-1])

    def case_otherwise(self, items):
        return (items[0], None)

    @v_args(meta=True)
    def condition(self, meta, items):
        left, tok, right = items
        op = _CMPS[str(tok).strip()]
        return A.Compare(self._span(meta), op, left, right)

    @v_args(meta=True)
    def condition_eq(self, meta, items):
        return A.Compare(self._span(meta), "eq", items[0], items[1])

    @v_args(meta=True)
    def slice(self, meta, items):
        lo, _colon, hi = items
        return A.Slice(self._span(meta), lo, hi)

    @v_args(meta=True)
    def indicator(self, meta, items):
        return A.Indicator(self._span(meta), items[-1])

    @v_args(meta=True)
    def norm(self, meta, items):
        return A.Abs(self._span(meta), [i for i in items if not isinstance(i, Token)][0], norm=True)


def _split_times(node):
    """`d_{in} \\times d_h` -> [d_in, d_h] (a space's dimensions). `\\times` and juxtaposition share one
    left-associative level, so `d \\times K h` is `(d \\times K) h`: the chain is flattened and cut at
    each `\\times`, giving [d, K h]."""
    chain = []  # (operator joining this factor to the previous one, factor), left to right
    while isinstance(node, A.BinOp) and node.op in ("times", "juxt"):
        chain.append((node.op, node.right))
        node = node.left
    chain.append((None, node))
    chain.reverse()
    dims = []
    for i, (_, factor) in enumerate(chain):
        joined_by = chain[i][0] if i else None
        if i and joined_by == "juxt":
            dims[-1] = A.BinOp(dims[-1].span.join(factor.span), "juxt", dims[-1], factor)
        else:
            dims.append(factor)
    return dims


# ------------------------------------------------------------------ errors
_TOKEN_NAMES = {
    "RBRACE": "'}'", "LBRACE": "'{'", "RPAR": "')'", "LPAR": "'('", "RSQB": "']'", "LSQB": "'['",
    "_SEP": "'\\\\' (end of statement)", "END_MODEL": "\\end{model}", "BEGIN_MODEL": "\\begin{model}",
    "GETS": "\\gets", "IN": "\\in", "COMMA": "','", "EQUAL": "'='", "$END": "end of file",
    "LETTER": "a name", "ALPHANUM": "a name", "CMD": "a command", "NUMBER": "a number", "DIGIT": "a number",
    "RBAR": "a closing '|'", "LBAR": "'|'", "BB": "\\mathbb{R}", "SUB": "'_'", "SUP": "'^'",
    "BIGOP": "\\sum, \\max or \\min", "TOP": "\\top", "MEAN": "\\mathrm{mean}", "BIGVERT": "\\Vert_{...}",
    "CAL": "\\mathcal{..}", "FONT": "\\mathrm{..}", "ACCENT": "an accent", "FRAC": "\\frac", "SQRT": "\\sqrt",
    "PRIME": "a prime", "LBRACE_ESC": "'\\{'", "RBRACE_ESC": "'\\}'", "MULOP": "an operator", "PLUS": "'+'",
    "MINUS": "'-'", "POW": "'**'", "VERT": "\\Vert", "LNORM": "'\\|'", "RNORM": "'\\|'", "ABS": "\\abs",
    "NORM": "\\norm", "DOTS": "\\dots", "CUP": "\\cup", "SIM": "\\sim", "HYPER": "\\hyper", "INPUT": "\\input",
    "PARAM": "\\param", "RETURN": "\\return",
}


def _describe(tok) -> str:
    if tok is None or getattr(tok, "type", "$END") == "$END":
        return "end of file"
    return f"'{tok}'" if str(tok) else _TOKEN_NAMES.get(tok.type, tok.type)


def _syntax_diagnostic(text: str, err: UnexpectedInput) -> Diagnostic:
    if isinstance(err, UnexpectedCharacters):
        span = Span.at(text, err.pos_in_stream, err.pos_in_stream + 1)
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        return Diagnostic(f"unexpected character {ch!r}", span)
    if isinstance(err, (UnexpectedToken, UnexpectedEOF)):
        tok = getattr(err, "token", None)
        if tok is None or tok.type == "$END":
            end = len(text.rstrip())
            span = Span.at(text, max(end - 1, 0), end)
            hint = "a model ends with \\end{model}" if "END_MODEL" in getattr(err, "expected", ()) else None
            return Diagnostic("unexpected end of file", span, hint)
        span = Span(tok.start_pos, tok.end_pos, tok.line, tok.column)
        expected = sorted({_TOKEN_NAMES.get(e, None) or e for e in getattr(err, "expected", ())
                           if not e.startswith("__")})
        hint = None
        if tok.type == "RBAR" or tok.type == "LBAR":
            hint = "check that every '|' has its partner"
        elif tok.type in ("HYPER", "INPUT", "PARAM", "RETURN") or (tok.type in ("LETTER", "ALPHANUM") and "_SEP" in getattr(err, "expected", ())):
            hint = "statements end with \\\\"
        elif len(expected) <= 6:
            hint = "expected " + " or ".join(expected)
        return Diagnostic(f"unexpected {_describe(tok)}", span, hint)
    return Diagnostic(str(err).splitlines()[0], Span(0, 0, 1, 1))


def read_source(path) -> bytes:
    """The bytes of a source file, reading at most MAX_BYTES + 1 of them (`/dev/zero` stops at the limit;
    `decode` then reports the file as too large). OSError propagates to the caller."""
    with open(path, "rb") as f:
        return f.read(MAX_BYTES + 1)


def decode(source: str | bytes, path: str) -> str:
    if isinstance(source, str):
        return source
    if len(source) > MAX_BYTES:
        size = f"{len(source)} bytes" if len(source) > MAX_BYTES + 1 else "more bytes"  # read_source stops at +1
        raise KokoyiError([Diagnostic(f"file is too large ({size}; the limit is {MAX_BYTES})")], "", path)
    try:
        return source.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        good = source[: e.start].decode("utf-8", errors="replace")
        span = Span.at(good, len(good), len(good) + 1)
        raise KokoyiError([Diagnostic(f"the file is not valid UTF-8 (byte 0x{source[e.start]:02x} at offset "
                                      f"{e.start})", span, "save the file as UTF-8")], good, path) from None


def _check_nesting(text: str, path: str) -> None:
    depth, opens = 0, []
    in_comment = False
    for i, ch in enumerate(text):
        if ch == "\n":
            in_comment = False
        elif in_comment:
            continue
        elif ch == "%" and (i == 0 or text[i - 1] != "\\"):
            in_comment = True
        elif ch in "({[":
            depth += 1
            opens.append(i)
            if depth > MAX_DEPTH:
                raise KokoyiError([Diagnostic(f"brackets nested more than {MAX_DEPTH} deep",
                                              Span.at(text, i, i + 1), "split the expression into definitions")],
                                  text, path)
        elif ch in ")}]" and depth:
            depth -= 1
            opens.pop()


def parse(source: str | bytes, path: str = "<string>") -> A.Program:
    """Parse kokoyi source text (str or bytes) into a `Program`; raise `KokoyiError` on mistakes."""
    text = decode(source, path)
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("%") for ln in text.splitlines()):
        raise KokoyiError([Diagnostic("empty file: no \\begin{model} found", Span(0, 0, 1, 1),
                                      "a model starts with \\begin{model}{Name}")], text, path)
    _check_nesting(text, path)
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, 20_000))  # long flat chains (a + b + ...) nest the tree deeply
    try:
        tree = _lark().parse(text)
        models = ToAst(text).transform(tree)
    except UnexpectedInput as e:
        raise KokoyiError([_syntax_diagnostic(text, e)], text, path) from None
    except Refused as e:
        raise KokoyiError([e.diagnostic], text, path) from None
    except (RecursionError, VisitError) as e:
        inner = e.orig_exc if isinstance(e, VisitError) else e
        if isinstance(inner, KokoyiError):
            raise inner from None
        if isinstance(inner, Refused):
            raise KokoyiError([inner.diagnostic], text, path) from None
        if not isinstance(inner, RecursionError):
            raise inner  # an internal error: not dressed up as a diagnostic about the source
        raise KokoyiError([Diagnostic("expression too deeply nested to compile", Span(0, 0, 1, 1),
                                      "split it into several definitions")], text, path) from None
    finally:
        sys.setrecursionlimit(old_limit)
    if not models:
        raise KokoyiError([Diagnostic("no \\begin{model} found", Span(0, 0, 1, 1),
                                      "a model starts with \\begin{model}{Name}")], text, path)
    flat = []
    for m in models:
        stmts = []
        for s in m.stmts:
            stmts.extend(s if isinstance(s, list) else [s])
        m.stmts = stmts
        flat.append(m)
    return A.Program(Span(0, len(text), 1, 1), flat, text, path)
