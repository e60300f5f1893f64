"""The review view: every image with its prediction and mask, and the canvas that corrects masks."""
