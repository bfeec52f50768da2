"""The definition language, one pass per module; :mod:`hexie.workflows.loader` is its public face.

``constants`` (vocabularies), ``messages`` (bilingual texts, "did you mean"), ``durations``,
``yaml_tree`` (compose with positions; the diagnostics report), ``fields`` (marshmallow fields,
validators, coercion of values), ``schemas`` (the shape pass), ``checks`` (the meaning pass),
``build`` (the immutable spec). Arrows point down that list; nothing here imports the loader.
"""
