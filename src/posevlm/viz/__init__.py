"""Plots and reports (optional extra ``viz``: matplotlib, plotly); the run explorer needs neither."""

from posevlm.viz.run_explorer import write_explorer
from posevlm.viz.scene_plot import plot_scene_topdown
from posevlm.viz.sampling_report import trajectory_figure, write_sampling_report_html, write_sampling_report_png

__all__ = ["plot_scene_topdown", "trajectory_figure", "write_sampling_report_html", "write_sampling_report_png",
           "write_explorer"]
