"""The demo world: a procedural renderer of labelled cartoon faces (DESIGN.md section 7)."""
