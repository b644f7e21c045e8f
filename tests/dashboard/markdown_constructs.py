"""Every markdown construct Streamlit renders, as a source could send it (links point at a dead port).

Used by the unit and AppTest tests of `dashboard.components.literal` and by the browser gallery
(`literal_gallery.py`), which renders each one through the real Streamlit frontend.
"""

from __future__ import annotations

DEAD = "http://127.0.0.1:9"  # the discard port: nothing answers, and a test would notice a fetch anyway

CONSTRUCTS: dict[str, str] = {
    "strong": "**bold** __bold__",
    "emphasis": "*it* _it_ a*b*c",
    "strikethrough": "~~gone~~ ~gone~",
    "code span": "`code` ``co`de``",
    "fenced code": "```python\nprint(1)\n```",
    "indented code": "    indented",
    "link": f"[x]({DEAD}/link 'title')",
    "image": f"![x]({DEAD}/pixel.png)",
    "reference link": f"[x][1]\n\n[1]: {DEAD}/ref",
    "autolink": f"<{DEAD}/auto> <a@b.example>",
    "bare url": f"{DEAD}/bare HTTPS://x.example/y ftp://x.example",
    "www": "www.example.com WWW.Example.com",
    "email": "mail a.b+c@b.example now",
    "html": f"<img src={DEAD}/img.png> <b>b</b> <a href='{DEAD}/a'>a</a> <!-- c --> <script>x</script>",
    "entity": "&amp; &lt;b&gt; &#42; &copy;",
    "heading": "# h1\n## h2\n###### h6",
    "setext heading": "title\n===\nsub\n---",
    "list": "- a\n* b\n+ c\n1. d\n2) e",
    "task list": "- [ ] todo\n- [x] done",
    "blockquote": "> quoted\n>> nested",
    "table": "| a | b |\n|---|---|\n| 1 | 2 |",
    "rule": "---\n***\n___",
    "inline math": "$x^2$ and $a_1$",
    "display math": "$$\\frac{1}{2}$$",
    "colour": ":red[x] :blue-background[y] :red-badge[z] :rainbow[r]",
    "small": ":small[tiny]",
    "material icon": ":material/home: :material/delete:",
    "streamlit logo": ":streamlit:",
    "emoji": ":smile: :+1: :rocket:",
    "backslashes": "\\* \\\\ \\$ C:\\path\\to \\",
    "footnote": "a[^1]\n\n[^1]: note",
    "hard break": "a  \nb\\\nc",
    "dollar amounts": "costs $5 and $10",
    "mixed": f"**HOSTILE** [l]({DEAD}/l) ![i]({DEAD}/i.png) $x^2$ <img src={DEAD}/j.png> :red[x] :smile:",
}
