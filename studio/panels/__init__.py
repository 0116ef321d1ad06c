"""The left-hand panels: Source, Degradation, Method (and the generated parameter form)."""
