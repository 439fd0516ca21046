"""`pipeline annotate-one`: Run one annotator on one image file and write its output."""
from .common import pending

command = pending("annotate-one", 4, "Run one annotator on one image file and write its output.")
