"""Spark jobs the toolkit ships in every code package (as ``_mlops/<job>.py``)."""
