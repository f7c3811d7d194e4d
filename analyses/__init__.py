"""Analysis scripts (percent format), run by ``dmi_eval.report`` through jupytext and nbclient."""
