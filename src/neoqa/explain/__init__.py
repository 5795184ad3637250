"""Explaining a decision: saliency and SmoothGrad through a model's torch forward, and the sheet
figure a vetter sees."""
