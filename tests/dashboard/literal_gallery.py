"""A page of every markdown construct passed through `literal()`, in each kind of element that renders
markdown; the browser test checks that Streamlit's frontend shows each one as plain text.

Run from the repository root with PYTHONPATH set to it (the test does): `streamlit run` puts only this
script's folder on the path.
"""

from __future__ import annotations

import streamlit as st

from dashboard.components import literal
from tests.dashboard.markdown_constructs import CONSTRUCTS

st.title("literal() gallery")
for i, text in enumerate(CONSTRUCTS.values()):
    with st.container(key=f"construct_{i}"):
        st.markdown(literal(text))
        st.error(literal(text))
        st.caption(literal(text))
        st.metric(literal(text), i)
        with st.expander(literal(text)):
            st.text("-")
        st.button(literal(text), key=f"button_{i}")
        st.segmented_control("options", [i], format_func=lambda _, t=text: literal(t), key=f"seg_{i}")
