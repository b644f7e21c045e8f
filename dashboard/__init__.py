"""Streamlit dashboard of the crypto pipeline (`streamlit run dashboard/app.py`)."""
