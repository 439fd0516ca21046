"""Pseudo-labellers (segmentation, sketch, CLIP) behind one interface, and the weight registry."""
