"""Plots and reports (optional extra ``viz``: matplotlib, plotly)."""

from posevlm.viz.scene_plot import plot_scene_topdown

__all__ = ["plot_scene_topdown"]
