"""`pipeline preview`: Draw a preview grid of random training samples and a class-frequency chart."""
from .common import pending

command = pending("preview", 5, "Draw a preview grid of random training samples and a class-frequency chart.")
