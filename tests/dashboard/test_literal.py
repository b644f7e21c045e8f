"""`literal()`: outside text embedded in markdown-rendering elements shows exactly as written.

The browser test (test_hostile_text.py) renders the same constructs through the real frontend; here the
helper's output is checked against the rules that frontend follows, and under AppTest every element kind
the dashboard uses receives it unchanged.
"""

from __future__ import annotations

import re
import textwrap

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.components import WORD_JOINER, literal
from tests.dashboard.helpers import ROOT
from tests.dashboard.markdown_constructs import CONSTRUCTS

GALLERY = ROOT / "tests" / "dashboard" / "literal_gallery.py"
PUNCTUATION = set(r"""!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~""")
# The frontend's own tests (StreamlitMarkdown): whether to load the emoji plugin, which then rewrites
# `:name:` in the parsed text; and whether the source holds math for KaTeX (after dropping escapes).
EMOJI_TRIGGER = re.compile(r":(?!material/|streamlit:)[\w+-][\w_+-]*:")
KATEX_ESCAPES = re.compile(r"\\[\\$`]")
KATEX_INLINE = re.compile(r"(?<!\$)\$(?![\s$])[^$\n]*?[^\s$]\$(?!\d)")
KATEX_BLOCK = re.compile(r"(?<!\$)\$\$+(?!\$)[\s\S]*?\$\$")
# GFM autolink literals, which remark finds in text nodes, i.e. after the backslashes are gone.
AUTOLINK = re.compile(r"(?i)https?://|www\.|[-.\w+]@[-\w]")


def unescape(text: str) -> str:
    """What a markdown parser makes of `literal()`'s output: escapes resolved, word joiners dropped."""
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL).replace(WORD_JOINER, "")


@pytest.mark.parametrize("name", list(CONSTRUCTS))
def test_every_construct_round_trips_and_every_punctuation_mark_is_escaped(name):
    text = CONSTRUCTS[name]
    shown = literal(text)
    assert unescape(shown) == re.sub(r"(?m)^[ \t]+", "", text)  # all but the indentation
    chars = shown.replace(WORD_JOINER, "")
    i = 0
    while i < len(chars):  # every punctuation mark is escaped, and every backslash escapes one
        if chars[i] == "\\":
            assert chars[i + 1] in PUNCTUATION, (name, chars[i : i + 2])
            i += 2
            continue
        assert chars[i] not in PUNCTUATION, (name, chars[i])
        i += 1


@pytest.mark.parametrize("name", list(CONSTRUCTS))
def test_no_frontend_plugin_is_triggered(name):
    shown = literal(CONSTRUCTS[name])
    assert not EMOJI_TRIGGER.search(shown)
    without_escapes = KATEX_ESCAPES.sub("_", shown)
    assert not KATEX_INLINE.search(without_escapes)
    assert not KATEX_BLOCK.search(without_escapes)
    assert not AUTOLINK.search(re.sub(r"\\(.)", r"\1", shown))


def test_plain_text_is_unchanged_and_other_types_are_stringified():
    assert literal("Bitcoin 42 Ünïcødé ₿") == "Bitcoin 42 Ünïcødé ₿"
    assert literal(3.5) == "3\\.5"
    assert literal(None) == "None"


def test_every_element_kind_receives_the_escaped_text_unchanged():
    """Under AppTest: each markdown-rendering element the dashboard uses gets exactly literal(text)
    (no element re-escapes, truncates or drops it), and the gallery page runs without an exception."""
    at = AppTest.from_file(str(GALLERY), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    expected = [literal(t) for t in CONSTRUCTS.values()]
    # Body elements dedent and strip their text (Streamlit's clean_text): only leading spaces go.
    body = [textwrap.dedent(e).strip() for e in expected]
    assert [m.value for m in at.markdown] == body
    assert [e.value for e in at.error] == body
    assert [c.value for c in at.caption] == body
    assert [m.label for m in at.metric] == expected
    assert [e.label for e in at.expander] == expected
    assert [b.label for b in at.button] == expected
    options = [[o.content for o in s.proto.options] for s in at.get("button_group")]
    assert options == [[e] for e in expected]
